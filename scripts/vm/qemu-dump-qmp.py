#!/usr/bin/python3
"""QMP client of qemu-dump.sh: QEMU's dump-guest-memory of a running guest, in every format.

    qemu-dump-qmp.py SOCKET DIR [TIMEOUT]

Talks QMP on the unix SOCKET of a running QEMU, and writes into DIR, one after the other
(dump-guest-memory with detach=true, then query-dump polled until it is no longer active):
  elf          format elf, paging false (`virsh dump --memory-only`)
  elf-paging   format elf, paging true (PT_LOADs of the guest's virtual mappings)
  kdump-*      each kdump format query-dump-guest-memory-capability offers (Debian's QEMU
               7.2: kdump-zlib only; it writes makedumpfile's flattened stream)
Other formats offered (win-dmp) are skipped. Then it quits QEMU. Every QMP message goes to
DIR/qmp.log. On stdout, one line each (tab-separated):
  version   QEMU's version and package
  target    the guest's architecture (query-target: x86_64, aarch64)
  formats   the formats offered, space-separated
  ok        NAME FORMAT PAGING SECONDS
  failed    NAME FORMAT PAGING MESSAGE
  skipped   FORMAT REASON
Exit 0 when it could talk to QEMU (whatever the dumps did), 2 otherwise. TIMEOUT: seconds one
dump may take (default 600).
"""
import json
import os
import socket
import sys
import time


class Qmp:
    def __init__(self, path, log):
        self.log = log
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(60)
        self.sock.connect(path)
        self.f = self.sock.makefile("rwb")
        self.dump_error = None

    def read(self):
        """The next reply; events are logged, and a failed dump's error kept."""
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError("QMP connection closed")
            self.log.write("<- " + line.decode(errors="replace"))
            self.log.flush()
            msg = json.loads(line)
            if "event" in msg:
                if msg["event"] == "DUMP_COMPLETED" and "error" in msg.get("data", {}):
                    self.dump_error = msg["data"]["error"]
                continue
            return msg

    def cmd(self, name, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.log.write("-> " + json.dumps(req) + "\n")
        self.log.flush()
        self.f.write((json.dumps(req) + "\n").encode())
        self.f.flush()
        return self.read()


def out(*fields):
    print("\t".join(str(f) for f in fields), flush=True)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    sock_path, outdir = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) == 4 else 600.0
    log = open(os.path.join(outdir, "qmp.log"), "a")
    try:
        q = Qmp(sock_path, log)
        q.read()  # the greeting
        q.cmd("qmp_capabilities")
        v = q.cmd("query-version").get("return", {})
        qv = v.get("qemu", {})
        out("version", "%s.%s.%s" % (qv.get("major"), qv.get("minor"), qv.get("micro")), v.get("package", ""))
        out("target", q.cmd("query-target").get("return", {}).get("arch", "?"))
        caps = q.cmd("query-dump-guest-memory-capability")
        formats = caps.get("return", {}).get("formats", [])
        out("formats", " ".join(formats))
        jobs = [("elf", "elf", False), ("elf-paging", "elf", True)]
        for fmt in formats:
            if fmt.startswith("kdump"):
                jobs.append((fmt, fmt, False))
            elif fmt != "elf":
                out("skipped", fmt, "not an ELF or kdump format")
        for name, fmt, paging in jobs:
            path = os.path.join(outdir, name)
            if os.path.exists(path):
                os.unlink(path)
            q.dump_error = None
            t0 = time.time()
            r = q.cmd("dump-guest-memory", paging=paging, protocol="file:" + path, format=fmt, detach=True)
            if "error" in r:
                out("failed", name, fmt, str(paging).lower(), r["error"].get("desc", r["error"]))
                continue
            status = "active"
            while status == "active":
                if time.time() - t0 > timeout:
                    status = "timed out after %ds" % timeout
                    break
                time.sleep(0.5)
                status = q.cmd("query-dump").get("return", {}).get("status", "?")
            if status == "completed":
                out("ok", name, fmt, str(paging).lower(), "%.1f" % (time.time() - t0))
            else:
                out("failed", name, fmt, str(paging).lower(), "%s%s" % (status, ": " + q.dump_error if q.dump_error else ""))
        q.cmd("quit")
    except (OSError, EOFError, ValueError) as e:
        print("qemu-dump-qmp.py: %s" % e, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
