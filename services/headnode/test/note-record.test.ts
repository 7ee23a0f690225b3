// A note as a journal record, encoded once (adapters.ts, encodeNoteRecord): msgpack packs
// the note after room for the record header, so the journal writes the header in place.
// The payload must be byte for byte what encodeNote makes (recovery decodes it with
// decodeNote), a note with large data is framed up to its data (which follows by reference), and one record's
// buffer must not be written by the packing of the next.

import { largeDataBytesMin } from "@ballast/protocol";
import { expect, test } from "vitest";
import {
  decodeNote,
  encodeNote,
  encodeNoteRecord,
  recordDataByReferenceBytesMin,
} from "../src/adapters.ts";
import { Journal, type JournalRecord, journalLimits } from "../src/journal/index.ts";
import { type Note, noteChecksum } from "../src/replica/note.ts";
import { temporaryDirectory } from "./fixtures/journal-files.ts";

function writeNote(opNum: number, bytes: number): Note {
  const data = new Uint8Array(bytes).map((_, index) => (index * 7 + opNum) & 0xff);
  return {
    opNum,
    epoch: 3,
    session: 0xdead_beef,
    kind: "write",
    offset: 4096 * opNum,
    length: bytes,
    data,
    checksum: 12345,
  };
}

/** A record's whole payload: `payload`, then its tail. */
function wholePayload(record: JournalRecord): Buffer {
  return Buffer.concat([record.payload, ...(record.tail ?? [])]);
}

test("the payload is what encodeNote makes, with room for the record header in front", () => {
  for (const note of [
    writeNote(2, 0),
    writeNote(6, 100),
    writeNote(7, recordDataByReferenceBytesMin - 1),
    { ...writeNote(3, 0), kind: "trim" as const, data: undefined, length: 1 << 20 },
  ]) {
    const record = encodeNoteRecord(note);
    expect(record.opNum).toBe(note.opNum);
    expect(record.tail).toBeUndefined();
    expect(record.payload).toEqual(encodeNote(note));
    expect(decodeNote(record.payload)).toEqual(decodeNote(encodeNote(note)));
    const framed = record.framed!;
    expect(framed.length).toBe(journalLimits.recordHeaderBytes + record.payload.length);
    expect(framed.buffer).toBe(record.payload.buffer);
    expect(framed.byteOffset + journalLimits.recordHeaderBytes).toBe(record.payload.byteOffset);
  }
});

test("a write's data of 512 bytes or more follows its note by reference, with its CRC32C", () => {
  for (const note of [
    writeNote(1, 4096),
    writeNote(8, recordDataByReferenceBytesMin),
    writeNote(2 ** 40, largeDataBytesMin - 1),
  ]) {
    const record = encodeNoteRecord(note);
    expect(record.tail).toHaveLength(1);
    expect(record.tail![0]).toBe(note.data);
    expect(record.tailChecksums).toEqual([note.checksum]);
    const framed = record.framed!;
    expect(framed.length).toBe(journalLimits.recordHeaderBytes + record.payload.length);
    expect(framed.byteOffset + journalLimits.recordHeaderBytes).toBe(record.payload.byteOffset);
    // The same note as packed whole, `data` last: one msgpack value, read as before.
    expect(decodeNote(wholePayload(record))).toEqual(decodeNote(encodeNote(note)));
    expect(wholePayload(record).byteLength).toBe(encodeNote(note).byteLength);
  }
});

test("a control note's data follows by reference too, and is checksummed by the journal", () => {
  const control: Note = { ...writeNote(4, 4096), kind: "control" };
  const record = encodeNoteRecord(control);
  expect(record.tail![0]).toBe(control.data);
  expect(record.tailChecksums).toEqual([undefined]);
  expect(decodeNote(wholePayload(record))).toEqual(decodeNote(encodeNote(control)));
});

test("a note with large data is framed up to its data, which follows by reference", () => {
  for (const bytes of [largeDataBytesMin, 1024 * 1024]) {
    const note = writeNote(9, bytes);
    const record = encodeNoteRecord(note);
    const framed = record.framed!;
    expect(framed).toBeDefined();
    // Identity, not deep equality: vitest compares a 1 MiB array element by element,
    // which took up to 30 s on a loaded machine.
    expect(record.tail).toHaveLength(1);
    expect(record.tail![0]).toBe(note.data);
    // The note's CRC32C of its data goes with it: the journal combines, not rereads.
    expect(record.tailChecksums).toEqual([note.checksum]);
    expect(framed.byteOffset + journalLimits.recordHeaderBytes).toBe(record.payload.byteOffset);
    expect(framed.byteLength).toBe(journalLimits.recordHeaderBytes + record.payload.length);
    const whole = Buffer.concat([record.payload, ...record.tail!]);
    expect(whole.equals(Buffer.from(encodeNote(note)))).toBe(true);
    const { data: decodedData, ...decoded } = decodeNote(whole);
    const { data: expectedData, ...expected } = decodeNote(encodeNote(note));
    expect(decoded).toEqual(expected);
    expect(Buffer.from(decodedData!).equals(Buffer.from(expectedData!))).toBe(true);
  }
});

test("packing the next note leaves an earlier record's buffer alone", () => {
  const records = Array.from({ length: 40 }, (_, index) => encodeNoteRecord(writeNote(index, 300)));
  const copies = records.map((record) => Uint8Array.from(record.framed!));
  for (const record of records) record.framed!.fill(0xee, 0, journalLimits.recordHeaderBytes);
  records.push(
    ...Array.from({ length: 40 }, (_, index) => encodeNoteRecord(writeNote(index, 300))),
  );
  for (const [index, copy] of copies.entries()) {
    expect(Uint8Array.from(records[index]!.payload)).toEqual(
      copy.subarray(journalLimits.recordHeaderBytes),
    );
    expect(decodeNote(records[index]!.payload)).toEqual(
      decodeNote(encodeNote(writeNote(index, 300))),
    );
  }
});

test("only a write's data comes with its note's checksum; other large data is read", () => {
  const write = writeNote(4, largeDataBytesMin);
  const control: Note = { ...write, kind: "control" };
  expect(encodeNoteRecord(write).tailChecksums).toEqual([write.checksum]);
  expect(encodeNoteRecord(control).tailChecksums).toEqual([undefined]);
  expect(encodeNoteRecord(writeNote(5, 100)).tailChecksums).toBeUndefined();
});

test("notes with data by reference are journaled and recovered whole", async () => {
  const temporary = await temporaryDirectory();
  try {
    const { journal } = await Journal.open({ directory: temporary.path });
    const notes = [100, 512, 4096, 4096, 20_000].map((bytes, index) => {
      const note = writeNote(index + 1, bytes);
      return { ...note, checksum: noteChecksum(note.data) };
    });
    await journal.append(notes.map(encodeNoteRecord));
    await journal.close();
    const recovered = await Journal.open({ directory: temporary.path });
    const asBuffers = (note: Note) => ({ ...note, data: Buffer.from(note.data!) });
    expect(recovered.records.map((record) => asBuffers(decodeNote(record.payload)))).toEqual(
      notes.map(asBuffers),
    );
    await recovered.journal.close();
  } finally {
    await temporary.remove();
  }
});
