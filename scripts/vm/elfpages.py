"""Pages of an ELF vmcore by physical frame number, for the comparisons with the peers'
reads: kdump-pages.py (kdump.sh) and the integration tests' peer reader (tests/writer.rs).
"""
import os
import struct

# The dumped kernel's page size (the integration tests set it for arm64's 16K and 64K).
PAGE = int(os.environ.get("VMCORE_PAGE_SIZE", "4096"))


def elf_loads(f):
    """The PT_LOADs of the ELF core open in f, as (paddr, memsz, offset, filesz), largest
    first: the kernel image's segment aliases part of the direct map, and for a physical
    read either answers the same."""
    eh = f.read(64)
    if eh[:4] != b"\x7fELF":
        raise SystemExit("%s: not an ELF file" % f.name)
    phoff, = struct.unpack_from("<Q", eh, 32)
    phnum, = struct.unpack_from("<H", eh, 56)
    if phnum == 0xFFFF:
        shoff, = struct.unpack_from("<Q", eh, 40)
        f.seek(shoff)
        phnum, = struct.unpack_from("<I", f.read(64), 44)
    f.seek(phoff)
    tab = f.read(56 * phnum)
    loads = []
    for i in range(phnum):
        t, _, off, _, paddr, filesz, memsz, _ = struct.unpack_from("<IIQQQQQQ", tab, 56 * i)
        if t == 1 and paddr != 0xFFFFFFFFFFFFFFFF:
            loads.append((paddr, memsz, off, filesz))
    loads.sort(key=lambda l: (-l[1], l[0]))
    return loads


def elf_page(f, loads, pfn, nodata=bytes(PAGE)):
    """The bytes of frame pfn; nodata for a frame past its segment's file data; None for a
    frame no segment holds."""
    a = pfn * PAGE
    for paddr, memsz, off, filesz in loads:
        if paddr <= a and a + PAGE <= paddr + memsz:
            if a - paddr + PAGE <= filesz:
                f.seek(off + a - paddr)
                return f.read(PAGE)
            return nodata
    return None
