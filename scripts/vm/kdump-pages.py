#!/usr/bin/python3
"""Reads kdump files with python3-libkdumpfile and compares them page by page (kdump.sh).

    kdump-pages.py OURS [--ref MAKEDUMPFILE_DUMP] [--elf FULL_VMCORE.elf]
                        [--memmap FILE SIZEOF_PAGE OFFSET_OF_MAPCOUNT OFFSET_OF_COMPOUND_HEAD]

Opens OURS (and the others) with libkdumpfile and reads every page frame 0..max_pfn through
KDUMP_MACHPHYSADDR: a page the dump does not hold (excluded, or a hole) raises an error and
counts as absent. Prints one JSON object:
  format, release, max_pfn              what libkdumpfile says of OURS
  pages                                 pages of OURS it reads
  uts_sysname                           init_uts_ns's sysname read through KDUMP_KVADDR (the
                                        kernel's own page tables, by libkdumpfile's addrxlat)
  ref_pages, only_ours, only_ref,       against the makedumpfile dump: pages each holds, pages
  ref_mismatch, first_*                 only one holds, common pages whose bytes differ
  elf_pages, elf_mismatch, elf_absent   against the full /proc/vmcore copy: pages of OURS whose
                                        bytes differ from memory, pages of OURS it lacks
  only_ours_types                       with --memmap (the struct pages from pfn 0 on, as
                                        `vmcore read` gives them): the page_type word of the
                                        pages only OURS holds, counted (names: 6.12+ types);
                                        a tail page (bit 0 of compound_head) is counted as
                                        "tail of" its head's type
Exit 0 when it could read the files (the verdict is kdump.sh's), 1 otherwise.
"""
import json
import struct
import sys

import kdumpfile

from elfpages import PAGE, elf_loads, elf_page


def reader(path):
    k = kdumpfile.kdumpfile(path)
    space = kdumpfile.KDUMP_MACHPHYSADDR

    def read(pfn):
        try:
            return k.read(space, pfn * PAGE, PAGE)
        except Exception:  # excluded or not in the dump: libkdumpfile's NoDataError and kin
            return None
    return k, read


def main():
    args = sys.argv[1:]
    ours = args.pop(0)
    ref = elf = memmap = None
    while args:
        opt = args.pop(0)
        if opt == "--ref":
            ref = args.pop(0)
        elif opt == "--elf":
            elf = args.pop(0)
        elif opt == "--memmap":
            memmap = (args.pop(0), int(args.pop(0), 0), int(args.pop(0), 0), int(args.pop(0), 0))
        else:
            raise SystemExit("unknown argument " + opt)
    k, read = reader(ours)
    attr = k.attr
    res = {
        "format": attr["file.format"],
        "release": attr["linux.uts.release"],
        "max_pfn": attr["max_pfn"],
        "pages": 0,
    }
    try:
        vi = attr["linux.vmcoreinfo.SYMBOL"]
        uts = vi["init_uts_ns"]
        off = 0
        try:
            off = attr["linux.vmcoreinfo.OFFSET.uts_namespace"]["name"]
        except Exception:
            off = 4  # struct uts_namespace { struct kref kref; struct new_utsname name; } (< 4.x)
        res["uts_sysname"] = k.read(kdumpfile.KDUMP_KVADDR, uts + off, 65).split(b"\0")[0].decode()
    except Exception as e:
        res["uts_sysname"] = "error: %s" % e
    rread = None
    if ref:
        rk, rread = reader(ref)
        res.update(ref_format=rk.attr["file.format"], ref_pages=0, only_ours=0, only_ref=0,
                   ref_mismatch=0, first_only_ours=None, first_only_ref=None, first_ref_mismatch=None)
    only_ours = []
    ef = loads = None
    if elf:
        ef = open(elf, "rb")
        loads = elf_loads(ef)
        res.update(elf_pages=0, elf_mismatch=0, elf_absent=0, first_elf_mismatch=None)
    for pfn in range(res["max_pfn"]):
        a = read(pfn)
        if a is not None:
            res["pages"] += 1
        if rread:
            b = rread(pfn)
            if b is not None:
                res["ref_pages"] += 1
            if a is not None and b is None:
                res["only_ours"] += 1
                only_ours.append(pfn)
                if res["first_only_ours"] is None:
                    res["first_only_ours"] = hex(pfn)
            elif a is None and b is not None:
                res["only_ref"] += 1
                if res["first_only_ref"] is None:
                    res["first_only_ref"] = hex(pfn)
            elif a is not None and a != b:
                res["ref_mismatch"] += 1
                if res["first_ref_mismatch"] is None:
                    res["first_ref_mismatch"] = hex(pfn)
        if ef and a is not None:
            m = elf_page(ef, loads, pfn)
            if m is None:
                res["elf_absent"] += 1
            elif m != a:
                res["elf_mismatch"] += 1
                if res["first_elf_mismatch"] is None:
                    res["first_elf_mismatch"] = hex(pfn)
            else:
                res["elf_pages"] += 1
    if memmap and only_ours:
        # PGTY_* << 24 (include/linux/page-flags.h, 6.12+)
        names = {0xf0: "buddy", 0xf1: "offline", 0xf2: "table", 0xf3: "guard", 0xf4: "hugetlb",
                 0xf5: "slab", 0xf6: "zsmalloc", 0xf7: "unaccepted", 0xf8: "large_kmalloc"}
        types = {}
        size, mapcount, compound = memmap[1:]

        def word(mf, pfn, off, fmt):
            mf.seek(pfn * size + off)
            b = mf.read(struct.calcsize(fmt))
            return struct.unpack(fmt, b)[0] if len(b) == struct.calcsize(fmt) else None

        def page_type(mf, pfn):
            v = word(mf, pfn, mapcount, "<I")
            if v is None:
                return "unknown (no struct page)"
            if v >> 24 in names:
                return "%s (page_type 0x%02x......)" % (names[v >> 24], v >> 24)
            return "page_type 0x%08x" % v

        heads = {}  # tail pfn -> its head, so that the tails of one folio walk back once
        with open(memmap[0], "rb") as mf:
            for pfn in only_ours:
                # A tail page's type is its head's: the first page before it whose
                # compound_head word has bit 0 clear (within a 1 GiB folio at most).
                head = pfn
                while head > 0 and pfn - head < (1 << 18) and (word(mf, head, compound, "<Q") or 0) & 1:
                    if head in heads:
                        head = heads[head]
                        break
                    head -= 1
                if head != pfn:
                    heads[pfn] = head
                key = page_type(mf, head)
                if head != pfn:
                    key = "tail of " + key
                types[key] = types.get(key, 0) + 1
        res["only_ours_types"] = types
    print(json.dumps(res))


if __name__ == "__main__":
    main()
