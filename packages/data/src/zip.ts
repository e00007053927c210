import yauzl from 'yauzl';
import { DataError, briefCause } from './errors.js';

/** Read every file entry of a zip whose name passes `keep` into memory (name -> bytes). */
export function readZipEntries(file: string, keep: (name: string) => boolean): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    const fail = (e: unknown, what = 'cannot read zip') =>
      reject(e instanceof DataError ? e : new DataError(`${what} ${file}: ${briefCause(e)} (expected a valid zip archive)`, { file, cause: e }));
    yauzl.open(file, { lazyEntries: true, autoClose: true }, (err, zip) => {
      if (err || !zip) return fail(err);
      const out = new Map<string, Buffer>();
      zip.on('error', (e) => fail(e, 'corrupt zip'));
      zip.on('end', () => resolve(out));
      zip.on('entry', (entry: yauzl.Entry) => {
        const name = entry.fileName;
        if (name.endsWith('/') || !keep(name)) {
          zip.readEntry();
          return;
        }
        zip.openReadStream(entry, (e2, stream) => {
          if (e2 || !stream) return fail(e2, `corrupt zip entry ${name} in`);
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('error', (e3) => fail(e3, `corrupt zip entry ${name} in`));
          stream.on('end', () => {
            out.set(name, Buffer.concat(chunks));
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}
