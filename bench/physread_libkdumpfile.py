#!/usr/bin/python3
"""The libkdumpfile side of the physical-read benchmark (see examples/physread.rs).

usage: physread_libkdumpfile.py FILE [--mode seq|random] [--seed N] [--passes N]
                                [--pfns PFN_LIST] [--verify SAMPLES]

Reads every page of PFN_LIST (written by `physread FILE --list-pfns PFN_LIST`: the pages
vmcore reads, ascending) as a 4096-byte physical read, in ascending order (seq) or in the
same xorshift64* Fisher-Yates order as the Rust example (random), and prints one JSON line
{"tool":"libkdumpfile","file":..,"mode":..,"pages":N,"seconds":S,"pages_per_sec":R,...}
with the same checksum as the example when the bytes are the same. Only the reads are
timed; the checksum is computed in a second, untimed pass over the same pages.

Without --pfns, the list is libkdumpfile's own `file.pagemap` (which may differ from
vmcore's: it counts pages only partly inside an ELF segment, for one).

--verify SAMPLES (written by `physread FILE --sample-out SAMPLES`) first compares
libkdumpfile's bytes of those pages with vmcore's, byte for byte, and fails on a mismatch.

Reads go to KDUMP_MACHPHYSADDR: KDUMP_KPHYSADDR makes libkdumpfile set up address
translation first, which fails on some dumps ("Cannot determine 5-level paging" on
x86_64 6.1 with la57, "Cannot determine VA_BITS" on aarch64 ELF); machine physical
addresses are kernel physical addresses on bare metal and on KVM guests (not on Xen).
"""

import json
import sys
import time

try:
    import kdumpfile
except ImportError:
    sys.exit("physread_libkdumpfile: cannot import kdumpfile: apt-get install python3-libkdumpfile "
             "(and run with /usr/bin/python3)")

READ_SIZE = 4096
M64 = (1 << 64) - 1
USAGE = ("usage: physread_libkdumpfile.py FILE [--mode seq|random] [--seed N] [--passes N] "
         "[--pfns PFN_LIST] [--verify SAMPLES]")


class XorShift64Star:
    """The generator of examples/physread.rs."""

    def __init__(self, seed):
        self.state = (seed & M64) or 0x9E3779B97F4A7C15

    def next_u64(self):
        x = self.state
        x ^= x >> 12
        x ^= (x << 25) & M64
        x ^= x >> 27
        self.state = x
        return (x * 0x2545F4914F6CDD1D) & M64


def shuffle(v, seed):
    rng = XorShift64Star(seed)
    for i in range(len(v) - 1, 0, -1):
        j = rng.next_u64() % (i + 1)
        v[i], v[j] = v[j], v[i]


def page_sum(pfn, page):
    """Xor of the page's little-endian u64 words, mixed with its pfn; the example sums these."""
    x = int.from_bytes(page, "little")
    bits = len(page) * 8
    while bits > 64:  # fold halves: the xor of all words
        bits //= 2
        x = (x >> bits) ^ (x & ((1 << bits) - 1))
    return ((x ^ ((pfn * 0x9E3779B97F4A7C15) & M64)) * 0xBF58476D1CE4E5B9) & M64


def parse_args(argv):
    args = {"file": None, "mode": "seq", "seed": 1, "passes": 1, "pfns": None, "verify": None}
    it = iter(argv)
    for a in it:
        if a in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        if a in ("--mode", "--seed", "--passes", "--pfns", "--verify"):
            try:
                v = next(it)
            except StopIteration:
                sys.exit(f"{a} needs a value\n{USAGE}")
            key = a[2:]
            if key in ("seed", "passes"):
                try:
                    v = int(v, 0)
                except ValueError:
                    sys.exit(f"{a} {v}: not a number")
            elif key == "mode" and v not in ("seq", "random"):
                sys.exit(f"--mode: expected seq or random, got {v}")
            args[key] = v
        elif a.startswith("-"):
            sys.exit(f"unknown option {a}\n{USAGE}")
        elif args["file"] is None:
            args["file"] = a
        else:
            sys.exit(f"one FILE only\n{USAGE}")
    if args["file"] is None:
        sys.exit(USAGE)
    args["passes"] = max(1, args["passes"])
    return args


def pagemap_pfns(k):
    pm = k.attr["file.pagemap"]
    max_pfn = k.attr["max_pfn"]
    out = []
    i = 0
    while i < max_pfn:
        try:
            i = pm.find_set(i)
        except kdumpfile.exceptions.NoDataException:
            break
        if i >= max_pfn:
            break
        out.append(i)
        i += 1
    return out


def verify(k, path):
    space = kdumpfile.KDUMP_MACHPHYSADDR
    with open(path, "rb") as f:
        data = f.read()
    rec = 8 + READ_SIZE
    if not data or len(data) % rec:
        sys.exit(f"{path}: not a sample file")
    bad = 0
    for off in range(0, len(data), rec):
        pfn = int.from_bytes(data[off:off + 8], "little")
        want = data[off + 8:off + rec]
        got = k.read(space, pfn * READ_SIZE, READ_SIZE)
        if got != want:
            bad += 1
            first = next(i for i in range(READ_SIZE) if got[i] != want[i])
            print(f"physread_libkdumpfile: pfn {pfn:#x}: bytes differ from vmcore's "
                  f"(first at offset {first:#x})", file=sys.stderr)
    if bad:
        sys.exit(f"physread_libkdumpfile: {bad} of {len(data) // rec} sample pages differ")
    return len(data) // rec


def attr(k, name):
    try:
        return k.attr[name]
    except Exception:  # noqa: BLE001
        return None


def main():
    args = parse_args(sys.argv[1:])
    try:
        k = kdumpfile.kdumpfile(args["file"])
    except Exception as e:  # noqa: BLE001 - any failure to open is reported the same way
        sys.exit(f"physread_libkdumpfile: {args['file']}: {type(e).__name__}: {e}")
    page_size = k.attr["arch.page_size"]
    if page_size != READ_SIZE:
        sys.exit(f"{args['file']}: page size {page_size}, this benchmark reads 4 KiB pages")

    if args["pfns"]:
        with open(args["pfns"]) as f:
            pfns = [int(line) for line in f if line.strip()]
        source = "vmcore"
    else:
        pfns = pagemap_pfns(k)
        source = "file.pagemap"
    if not pfns:
        sys.exit(f"{args['file']}: no pages to read")
    verified = verify(k, args["verify"]) if args["verify"] else 0

    if args["mode"] == "random":
        shuffle(pfns, args["seed"])

    read = k.read
    space = kdumpfile.KDUMP_MACHPHYSADDR
    pfn = None
    try:
        # Timed: the reads alone. Python optimises nothing away, and the checksum costs
        # more than a read here (~8 us a page), so it gets its own untimed pass below.
        start = time.perf_counter()
        for _ in range(args["passes"]):
            for pfn in pfns:
                read(space, pfn * READ_SIZE, READ_SIZE)
        seconds = time.perf_counter() - start
        hits, misses = attr(k, "cache.hits"), attr(k, "cache.misses")
        checksum = 0
        for pfn in pfns:
            checksum += page_sum(pfn, read(space, pfn * READ_SIZE, READ_SIZE))
        checksum = (checksum * args["passes"]) & M64  # the example sums every pass
    except Exception as e:  # noqa: BLE001
        sys.exit(f"physread_libkdumpfile: pfn {pfn}: {type(e).__name__}: {e}")
    pages = len(pfns) * args["passes"]

    print(json.dumps({
        "tool": "libkdumpfile",
        "file": args["file"],
        "mode": args["mode"],
        "seed": args["seed"],
        "passes": args["passes"],
        "pages": pages,
        "seconds": seconds,
        "pages_per_sec": pages / seconds if seconds > 0 else 0.0,
        "checksum": f"{checksum:#018x}",
        "pfn_source": source,
        "verified_pages": verified,
        "cache_hits": hits,
        "cache_misses": misses,
    }, sort_keys=True))


if __name__ == "__main__":
    main()
