/** One error class per failure, each with a stable `code` to branch on. */
export type L4lbErrorCode =
  | 'L4LB_ERR_CONFIG'
  | 'L4LB_ERR_ARGS'
  | 'L4LB_ERR_BIND';

export class L4lbError extends Error {
  constructor(readonly code: L4lbErrorCode, message: string) {
    super(message);
    this.name = 'L4lbError';
  }
}

export interface ConfigIssue {
  readonly path: string;
  readonly message: string;
}

export class ConfigError extends L4lbError {
  constructor(readonly issues: readonly ConfigIssue[]) {
    super('L4LB_ERR_CONFIG', issues.map((i) => `${i.path}: ${i.message}`).join('\n'));
    this.name = 'ConfigError';
  }
}

export class BindError extends L4lbError {
  constructor(message: string) {
    super('L4LB_ERR_BIND', message);
    this.name = 'BindError';
  }
}
