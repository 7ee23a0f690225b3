// The head node's note journal: a segmented, append-only, checksummed file journal with
// group commit, one per partition replica. journal.ts has the model and the durability
// argument, format.ts the bytes on disk, recovery.ts what a crash can and cannot explain.

export * as journalLimits from "./constants.ts";
export {
  JournalAssertionError,
  JournalCorruptError,
  JournalFailedError,
  JournalUntrustedError,
  JournalUsageError,
} from "./errors.ts";
export { failedMarkerName } from "./failed-marker.ts";
export { Journal, type JournalOptions, type RecoveredJournal } from "./journal.ts";
export type { JournalRecord } from "./layout.ts";
export { readNewestRecords } from "./recovery.ts";
export type { ScannedRecord } from "./segment-scan.ts";
