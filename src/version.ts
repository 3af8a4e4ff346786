import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** package.json's version (dist/version.js sits one level below the package root). */
export const VERSION: string = (JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }).version;
