// The leftover sweep's decisions: which of a sled's objects belong to a volume
// incarnation the catalogue no longer knows, and when such a leftover may be deleted.
// Pure: the sleds' listings, the incarnation ids the catalogue names and the time come
// in as arguments; the shell (leftover-sweeper.ts) lists the sleds, reads the catalogue
// and sends the deletes.
//
// Why it exists: the purger deletes a deleted incarnation's objects only while its
// purge record lasts, and only from the sleds that answer meanwhile; the orphan sweep
// (sweep.ts) looks only at live volumes' current incarnations. So the objects of a
// deleted incarnation on a sled that was away when its record was forgotten (down past
// the record's age limit, or declared out or evicted from membership and back later)
// were kept for good. This sweep finds them from the other side: an object whose
// incarnation no record names.
//
// Model: a volume's incarnation id is never reused (the name's counter in the catalogue
// only grows, and the id carries a random nonce too), and the catalogue names every
// incarnation that may still be used: a listed volume (and the parent a clone reads
// through), the partition records (written before the volume record by a create, and
// before any head node is configured, so before any chunk of the incarnation can exist;
// also those a create or delete that died halfway left), and the purge records (the
// purger's, until it forgets them). The shell lists the sleds first and reads the
// catalogue after: an object listed was written by a head node configured from a
// partition record that already existed, so an incarnation that the later read does
// not name was deleted, or superseded by a later create of its name, and no one can
// ever read the object again.
//
// What counts as an incarnation's object, exactly: a chunk whose id has the shape the
// head node gives (`sledChunkIdOf`: the volume id, or the base-36 CRC32C of it when the
// readable id would be too long, then `-p…-e…-s…-c…`), and a blob keyed
// `checkpoints/<volume id>/<partition>/<node>/<name>`. Anything else on a sled — the
// chaos nemesis's filler chunks (`chaos-filler-<n>`, owner `chaos-filler`), a tool's or
// an operator's objects, blobs under other prefixes — is not an incarnation's and is
// never touched. A chunk is kept when its readable prefix is a known id or its hashed
// prefix is the hash of one; a prefix that could be either is kept if either matches,
// so a hash collision keeps a leftover, never deletes a live chunk. The owner named on
// the chunk is not trusted to find the incarnation: the id is.
//
// Confirmation: a leftover is deleted only once two passes at least `graceMs` apart
// found it one, each with its own read of the catalogue, so a read that somehow missed
// a record (a listing racing a create) is corrected before anything goes. A pass lists
// at most a bounded window of each sled (in id order, continuing where the last pass
// stopped, from the start again after the end), so a sighting is forgotten when a
// window that covers it no longer shows it as a leftover (deleted, or known after all),
// and kept while no window covers it. Sightings are kept per tenure, at most
// `sightingsMax` (the rest are counted on a later cycle). Every doubt keeps the object:
// a listing that fails adds no window and no sighting; a catalogue read that fails ends
// the pass.

import { hashedChunkIdPrefixOf } from "@ballast/protocol";
import type { ChunkEntry } from "./purge.ts";

/** The incarnation ids the catalogue names, with the hashed chunk-id prefix of each. */
export interface KnownIncarnations {
  ids: ReadonlySet<string>;
  hashedPrefixes: ReadonlySet<string>;
}

export function knownIncarnationsOf(ids: Iterable<string>): KnownIncarnations {
  const known = new Set(ids);
  return { ids: known, hashedPrefixes: new Set([...known].map(hashedChunkIdPrefixOf)) };
}

/** The tail the head node puts after a readable volume id (decimal numbers). */
const readableChunkId = /^(.+)-p[0-9]+-e[0-9]+-s[0-9a-z]+-c[0-9]+$/;
/** The whole of a hashed chunk id: the CRC32C in base 36, then base-36 numbers. */
const hashedChunkId = /^([0-9a-z]+)-p[0-9a-z]+-e[0-9a-z]+-s[0-9a-z]+-c[0-9a-z]+$/;
/** `checkpoints/<volume id>/<partition>/<node>/<name>`. */
const checkpointBlobKey = /^checkpoints\/([^/]+)\/(?:0|[1-9][0-9]*)\/[^/]+\/[^/]+$/;

/** Whether a chunk id is a head node's chunk of an incarnation `known` does not name. */
export function isLeftoverChunk(chunkId: string, known: KnownIncarnations): boolean {
  const readable = readableChunkId.exec(chunkId);
  const hashed = hashedChunkId.exec(chunkId);
  if (readable === null && hashed === null) return false;
  if (readable !== null && known.ids.has(readable[1]!)) return false;
  if (hashed !== null && known.hashedPrefixes.has(hashed[1]!)) return false;
  return true;
}

/** Whether a blob key is a checkpoint of an incarnation `known` does not name. */
export function isLeftoverBlob(key: string, known: KnownIncarnations): boolean {
  const match = checkpointBlobKey.exec(key);
  return match !== null && !known.ids.has(match[1]!);
}

export type LeftoverTarget =
  | { kind: "chunk"; sled: string; chunkId: string; owner: ChunkEntry["owner"]; bytes: number }
  | { kind: "blob"; sled: string; key: string; bytes: number };

/** What one sled's listing of this pass returned, of one kind, from `after` on. */
export interface ListedWindow {
  sled: string;
  kind: LeftoverTarget["kind"];
  /** Listed after this id (exclusive); undefined: from the start. */
  after: string | undefined;
  /** Listed through this id (inclusive); undefined: to the end. */
  through: string | undefined;
}

export interface SledListing {
  sled: string;
  chunks?: { entries: readonly ChunkEntry[]; window: ListedWindow };
  blobs?: { entries: readonly { key: string; bytes: number }[]; window: ListedWindow };
}

/** The leftovers in this pass's listings. */
export function leftoversIn(
  listings: readonly SledListing[],
  known: KnownIncarnations,
): LeftoverTarget[] {
  const leftovers: LeftoverTarget[] = [];
  for (const { sled, chunks, blobs } of listings) {
    for (const chunk of chunks?.entries ?? []) {
      if (!isLeftoverChunk(chunk.chunkId, known)) continue;
      const { chunkId, owner, bytes } = chunk;
      leftovers.push({ kind: "chunk", sled, chunkId, owner, bytes });
    }
    for (const blob of blobs?.entries ?? []) {
      if (isLeftoverBlob(blob.key, known)) {
        leftovers.push({ kind: "blob", sled, key: blob.key, bytes: blob.bytes });
      }
    }
  }
  return leftovers;
}

function idOf(target: LeftoverTarget): string {
  return target.kind === "chunk" ? target.chunkId : target.key;
}

function keyOf(target: LeftoverTarget): string {
  return `${target.sled}\n${target.kind}\n${idOf(target)}`;
}

function covers(window: ListedWindow, sled: string, kind: string, id: string): boolean {
  return (
    window.sled === sled &&
    window.kind === kind &&
    (window.after === undefined || id > window.after) &&
    (window.through === undefined || id <= window.through)
  );
}

interface Sighting {
  sled: string;
  kind: LeftoverTarget["kind"];
  id: string;
  firstSeenMs: number;
}

/**
 * The two-pass confirmation over windows: a leftover is due once a pass finds it one
 * again at least `graceMs` after the pass that first found it; a sighting goes when a
 * window that covers it does not show it as a leftover.
 */
export class LeftoverSightings {
  private readonly seen = new Map<string, Sighting>();

  constructor(
    private readonly graceMs: number,
    private readonly sightingsMax: number,
  ) {}

  /** Takes a pass's windows and the leftovers in them; returns those due for deletion. */
  confirm(
    windows: readonly ListedWindow[],
    leftovers: readonly LeftoverTarget[],
    nowMs: number,
  ): LeftoverTarget[] {
    const current = new Set(leftovers.map(keyOf));
    for (const [key, sighting] of this.seen) {
      if (current.has(key)) continue;
      if (windows.some((window) => covers(window, sighting.sled, sighting.kind, sighting.id))) {
        this.seen.delete(key);
      }
    }
    const due: LeftoverTarget[] = [];
    for (const leftover of leftovers) {
      const key = keyOf(leftover);
      const sighting = this.seen.get(key);
      if (sighting === undefined) {
        if (this.seen.size >= this.sightingsMax) continue;
        this.seen.set(key, {
          sled: leftover.sled,
          kind: leftover.kind,
          id: idOf(leftover),
          firstSeenMs: nowMs,
        });
      } else if (nowMs - sighting.firstSeenMs >= this.graceMs) {
        due.push(leftover);
      }
    }
    return due;
  }

  /** Leftovers waiting out their grace. */
  get waiting(): number {
    return this.seen.size;
  }
}
