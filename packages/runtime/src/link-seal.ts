// Sealing a link token on its way through NATS. A link's token is handed out in the reply
// to `link.offer.v1`, and replies travel on _INBOX subjects, which every connection of
// the asker's role may read (protocol permissions.ts: each role its own prefix, and all
// holders of client.json share the client role's; the client role once read every
// role's): in the clear, whoever reads them could use a token meant for another, and
// with a replica-scope one send replication messages NATS would never let it publish. So the asker sends an X25519 public key with its
// offer request, and the server answers with its own public key and the token sealed
// (AES-256-GCM) under the key both derive from the Diffie-Hellman secret: someone who
// only reads the exchange learns nothing usable. Who may *ask* is still NATS's call.
//
// Failure model: a sealed token that does not open (another key, damaged bytes) is an
// InvalidMessage BallastError; the asker then has no link and goes on over NATS.

import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from "node:crypto";
import { BallastError, ErrorCode } from "@ballast/protocol";

/** The DER prefix of an X25519 SubjectPublicKeyInfo; the raw 32-byte key follows it. */
const x25519SpkiPrefix = Buffer.from("302a300506032b656e032100", "hex");
const publicKeyBytes = 32;
const ivBytes = 12;
const tagBytes = 16;

/** One side's X25519 key pair: seals for and opens from a peer's public key. */
export class SealKeys {
  /** The raw 32-byte public key, as sent on the wire. */
  readonly publicKey: Uint8Array;
  readonly #privateKey: KeyObject;

  constructor() {
    const { publicKey, privateKey } = generateKeyPairSync("x25519");
    const der = publicKey.export({ type: "spki", format: "der" });
    this.publicKey = new Uint8Array(der.subarray(der.byteLength - publicKeyBytes));
    this.#privateKey = privateKey;
  }

  /** `secret` sealed for the holder of `peerPublicKey`: iv, ciphertext, tag. */
  seal(peerPublicKey: Uint8Array, secret: Uint8Array): Uint8Array {
    const iv = randomBytes(ivBytes);
    const cipher = createCipheriv("aes-256-gcm", this.#sharedKey(peerPublicKey), iv);
    const body = Buffer.concat([cipher.update(secret), cipher.final()]);
    return Buffer.concat([iv, body, cipher.getAuthTag()]);
  }

  /** What `seal` sealed for this key pair from `peerPublicKey`. */
  open(peerPublicKey: Uint8Array, sealed: Uint8Array): Uint8Array {
    if (sealed.byteLength < ivBytes + tagBytes) throw invalid("too short");
    const iv = sealed.subarray(0, ivBytes);
    const tag = sealed.subarray(sealed.byteLength - tagBytes);
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.#sharedKey(peerPublicKey), iv);
      decipher.setAuthTag(tag);
      return Buffer.concat([
        decipher.update(sealed.subarray(ivBytes, sealed.byteLength - tagBytes)),
        decipher.final(),
      ]);
    } catch (error) {
      if (error instanceof BallastError) throw error;
      throw invalid("it does not open with this key");
    }
  }

  #sharedKey(peerPublicKey: Uint8Array): Buffer {
    if (peerPublicKey.byteLength !== publicKeyBytes)
      throw invalid("a public key of the wrong size");
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey({
        key: Buffer.concat([x25519SpkiPrefix, peerPublicKey]),
        format: "der",
        type: "spki",
      });
    } catch {
      throw invalid("not an X25519 public key");
    }
    const shared = diffieHellman({ privateKey: this.#privateKey, publicKey });
    return createHash("sha256").update(shared).update("ballast link token v1").digest();
  }
}

function invalid(why: string): BallastError {
  return new BallastError(ErrorCode.InvalidMessage, `a sealed link token: ${why}`);
}
