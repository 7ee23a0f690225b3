// The backend of an export: a Ballast volume seen as a block device, the client
// library's BlockDevice (one interface, defined there).
//
// Contract the server relies on: offsets and lengths are bytes, multiples of the
// 512-byte sector, inside the device (the server checks this before calling, so a
// refusal by the backend means a bug or a race with a resize). An operation's promise
// settles once the operation is complete on the replicas; a rejection is a
// BallastError whose code says why (any other Error counts as an I/O error). A write
// is durable on every replica's journal when it is acknowledged, whichever connection
// issued it, so FUA needs nothing beyond the acknowledgement; `flush` is a barrier that
// waits for the writes issued before it (on every connection) to settle, and sends
// nothing. No state is private to a connection, which is what lets the server advertise
// NBD_FLAG_CAN_MULTI_CONN. Each connection passes a signal with its operations that
// fires when the connection closes, so that what a gone client had in flight is
// retried no more: its next connection's writes must not be undone by an old retry.

export type { BlockDevice } from "@ballast/client";
