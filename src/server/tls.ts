/**
 * The certificate and key of `remex serve --tls-cert/--tls-key`, checked at start-up so that a wrong file
 * is reported in words rather than as an OpenSSL error code from deep inside the HTTPS server.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { TlsFiles } from '../api/http/http-server.js';
import { InvalidArgumentError } from '../core/errors.js';

export interface LoadedTls extends TlsFiles {
  /** The leaf certificate's subject alternative names and expiry, for the start-up log. */
  subjectAltName: string | undefined;
  validTo: string;
  expired: boolean;
}

function read(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new InvalidArgumentError(`cannot read ${flag} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export function loadTlsFiles(certPath: string, keyPath: string, now = new Date()): LoadedTls {
  const cert = read(certPath, '--tls-cert');
  const key = read(keyPath, '--tls-key');
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new InvalidArgumentError(`--tls-cert ${certPath} holds no PEM certificate`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new InvalidArgumentError(`--tls-key ${keyPath} holds no unencrypted PEM private key`);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new InvalidArgumentError(`--tls-key ${keyPath} is not the key of the certificate in ${certPath}`);
  return { cert, key, subjectAltName: leaf.subjectAltName, validTo: leaf.validTo, expired: new Date(leaf.validTo) < now };
}
