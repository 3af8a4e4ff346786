/** A config file → unknown (YAML, or JSON by `.json` extension), or readable errors. */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.js';
import { validate } from './validate.js';
import type { Config } from './schema.js';

export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError([{ path, message: `cannot read file: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }]);
  }
  try {
    if (extname(path).toLowerCase() === '.json') return JSON.parse(text);
    return parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    throw new ConfigError([{ path, message: `cannot parse: ${(err as Error).message.split('\n')[0]}` }]);
  }
}

/** Read and validate; throws ConfigError listing every problem. */
export function loadConfig(path: string): Config {
  const result = validate(readConfigFile(path));
  if (!result.ok) throw new ConfigError(result.errors);
  return result.config;
}
