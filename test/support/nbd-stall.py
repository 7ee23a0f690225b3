#!/usr/bin/python3
# A real NBD client (libnbd, which this project did not write) that stops taking its
# replies: it sends COUNT reads of BYTES each and then drives the connection no more,
# as a stopped process would. For the test that such a client cannot stall the others.
#
#   nbd-stall.py URL COUNT BYTES
#
# Prints {"sent": COUNT} once every read is sent. When stdin closes it takes what the
# server still sends and prints {"disconnected": bool, "answered": n}: whether the
# server had cut the connection, and how many reads were answered before that.

import json
import sys

import nbd

url, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
handle = nbd.NBD()
handle.connect_uri(url)
for index in range(count):
    handle.aio_pread(nbd.Buffer(size), index * size)
# Send the requests, and read nothing: libnbd moves bytes only while it is driven.
while handle.aio_get_direction() & nbd.AIO_DIRECTION_WRITE:
    handle.aio_notify_write()
print(json.dumps({"sent": count}), flush=True)
sys.stdin.read()

answered = 0
disconnected = False
try:
    while handle.aio_in_flight() > 0:
        handle.poll(1000)
        while handle.aio_peek_command_completed() > 0:
            handle.aio_command_completed(handle.aio_peek_command_completed())
            answered += 1
except nbd.Error:
    disconnected = True
print(json.dumps({"disconnected": disconnected, "answered": answered}), flush=True)
