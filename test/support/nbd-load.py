#!/usr/bin/python3
# A steady write load through a real NBD client (libnbd, which this project did not
# write), for integration tests that measure what a fault costs an NBD client.
#
#   nbd-load.py URL OFFSET SLOTS
#
# Writes 4 KiB blocks one after another, in a ring of SLOTS blocks starting at byte
# OFFSET, each filled with a byte that changes with every write, and reads each block
# back after its write. Prints one JSON line per request:
# {"kind": "write" | "read", "start": ms, "end": ms, "ok": bool, "error"?: str}, with
# wall-clock milliseconds (comparable with the test's Date.now(): same machine). A read
# that returns other bytes than the write just acknowledged is an error too. An error is
# printed and the load goes on: a test counts errors, it does not stop at the first.
# When stdin closes (or reads "stop"), it reads every slot back and prints
# {"kind": "verify", "mismatches": [...], "errors": [...]}: each slot must hold what its
# last acknowledged write put there.

import json
import sys
import threading
import time

import nbd

block_bytes = 4096


def now_ms():
    return time.time() * 1000


def emit(record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def main():
    url, offset, slots = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    handle = nbd.NBD()
    handle.connect_uri(url)
    stopping = threading.Event()

    def watch_stdin():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stopping.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    emit({"kind": "ready", "at": now_ms()})
    # Last acknowledged fill per slot; a failed write leaves the slot unknown (the write
    # may or may not have landed), so it is not verified.
    acknowledged = {}
    count = 0
    while not stopping.is_set():
        slot = count % slots
        fill = 1 + (count % 251)
        count += 1
        start = now_ms()
        try:
            handle.pwrite(bytes([fill]) * block_bytes, offset + slot * block_bytes)
            acknowledged[slot] = fill
            emit({"kind": "write", "start": start, "end": now_ms(), "ok": True})
        except nbd.Error as error:
            acknowledged.pop(slot, None)
            emit({"kind": "write", "start": start, "end": now_ms(), "ok": False, "error": str(error)})
            continue
        start = now_ms()
        try:
            data = handle.pread(block_bytes, offset + slot * block_bytes)
            if data == bytes([fill]) * block_bytes:
                emit({"kind": "read", "start": start, "end": now_ms(), "ok": True})
            else:
                found = sorted(set(data))[:4]
                emit({"kind": "read", "start": start, "end": now_ms(), "ok": False,
                      "error": f"read {found} after writing {fill}"})
        except nbd.Error as error:
            emit({"kind": "read", "start": start, "end": now_ms(), "ok": False, "error": str(error)})
    mismatches = []
    errors = []
    for slot, fill in sorted(acknowledged.items()):
        try:
            data = handle.pread(block_bytes, offset + slot * block_bytes)
            if data != bytes([fill]) * block_bytes:
                mismatches.append({"slot": slot, "expected": fill, "found": sorted(set(data))[:4]})
        except nbd.Error as error:
            errors.append(str(error))
    emit({"kind": "verify", "slots": len(acknowledged), "mismatches": mismatches, "errors": errors})
    handle.shutdown()


main()
