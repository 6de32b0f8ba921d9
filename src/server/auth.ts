/**
 * Bearer-token authentication and authorization of the HTTP API.
 *
 * Tokens come from a JSON file (`--tokens FILE`, `HOLDFAST_TOKENS`):
 *   [{ "name": "ci", "token": "…", "owners": "ci-*", "admin": false }, …]
 * - `owners`: which owners the token may acquire, renew and release for. A glob (`*` any run of
 *   characters, `?` one character, anchored at both ends), or a regular expression written as
 *   `/…/flags` (matched as written, so anchor it yourself). Default `*` (any owner).
 * - `admin`: may force-release keys and release other owners' leases. Default false.
 * Tokens are compared in constant time (both sides hashed, `timingSafeEqual`), every configured
 * token is compared on every request, and tokens are never logged.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ForbiddenError, InvalidRequestError, UnauthorizedError } from '../model/errors.js';

export interface TokenConfig {
  /** Shown in logs and recorded in history as who did a release; never the token itself. */
  name: string;
  /** The secret, at least 16 characters. */
  token: string;
  /** Owners this token may act for: a glob or `/regex/flags`. @default '*' */
  owners?: string;
  /** May force-release and release other owners' leases. @default false */
  admin?: boolean;
}

/** Who made a request. With no tokens configured everyone is an anonymous admin (loopback only). */
export interface Principal {
  name: string;
  admin: boolean;
  /** True when the owner is one this principal may act for. */
  mayActFor(owner: string): boolean;
}

const MIN_TOKEN_LENGTH = 16;

export const ANONYMOUS: Principal = Object.freeze({ name: 'anonymous', admin: true, mayActFor: () => true });

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Compiles an owners pattern: `/regex/flags` or a glob. */
export function ownerPattern(pattern: string, field = 'owners'): RegExp {
  const regex = /^\/(.+)\/([a-z]*)$/s.exec(pattern);
  if (regex) {
    try {
      return new RegExp(regex[1]!, regex[2]!.replace(/[gy]/g, ''));
    } catch (error) {
      throw new InvalidRequestError(field, `not a valid regular expression: ${(error as Error).message}`);
    }
  }
  const body = [...pattern].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\/-]/g, '\\$&'))).join('');
  return new RegExp(`^${body}$`, 's');
}

interface Entry {
  readonly hash: Buffer;
  readonly principal: Principal;
}

export class TokenTable {
  readonly #entries: Entry[];

  constructor(configs: readonly TokenConfig[]) {
    if (!Array.isArray(configs) || configs.length === 0) throw new InvalidRequestError('tokens', 'expected a non-empty array of { name, token, owners, admin }');
    const names = new Set<string>();
    const secrets = new Set<string>();
    this.#entries = configs.map((config, i) => {
      const field = `tokens[${i}]`;
      if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new InvalidRequestError(field, 'expected an object { name, token, owners, admin }');
      for (const name of Object.keys(config)) {
        if (!['name', 'token', 'owners', 'admin'].includes(name)) throw new InvalidRequestError(`${field}.${name}`, 'unknown field');
      }
      const { name, token, owners = '*', admin = false } = config;
      if (typeof name !== 'string' || name.length === 0 || name.length > 128) throw new InvalidRequestError(`${field}.name`, 'expected a string of 1..128 characters');
      if (names.has(name)) throw new InvalidRequestError(`${field}.name`, `duplicate name ${JSON.stringify(name)}`);
      if (typeof token !== 'string' || token.length < MIN_TOKEN_LENGTH || /\s/.test(token)) {
        throw new InvalidRequestError(`${field}.token`, `expected at least ${MIN_TOKEN_LENGTH} characters without spaces`);
      }
      if (secrets.has(token)) throw new InvalidRequestError(`${field}.token`, 'the same token is configured twice');
      if (typeof owners !== 'string' || owners.length === 0) throw new InvalidRequestError(`${field}.owners`, 'expected a glob or /regex/');
      if (typeof admin !== 'boolean') throw new InvalidRequestError(`${field}.admin`, 'expected a boolean');
      names.add(name);
      secrets.add(token);
      const pattern = ownerPattern(owners, `${field}.owners`);
      const principal: Principal = Object.freeze({ name, admin, mayActFor: (owner: string) => pattern.test(owner) });
      return { hash: digest(token), principal };
    });
  }

  /** The principal of an `Authorization` header value; throws `UNAUTHORIZED`. */
  authenticate(header: string | undefined): Principal {
    const match = typeof header === 'string' ? /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header) : null;
    if (!match) throw new UnauthorizedError('A bearer token is required: send `Authorization: Bearer TOKEN`');
    const presented = digest(match[1]!);
    let found: Principal | null = null;
    // Every entry is compared, whatever matched, so the time taken tells nothing.
    for (const entry of this.#entries) {
      if (timingSafeEqual(entry.hash, presented) && found === null) found = entry.principal;
    }
    if (found === null) throw new UnauthorizedError('The bearer token is not valid');
    return found;
  }
}

/** Reads a tokens file (or, when `source` starts with `[`, the JSON itself). */
export function loadTokens(source: string): TokenConfig[] {
  let text = source;
  if (!source.trimStart().startsWith('[')) {
    try {
      text = readFileSync(source, 'utf8');
    } catch (error) {
      throw new InvalidRequestError('tokens', `cannot read ${JSON.stringify(source)}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  }
  try {
    return JSON.parse(text) as TokenConfig[];
  } catch {
    throw new InvalidRequestError('tokens', 'the tokens file is not valid JSON (expected [{ "name", "token", "owners", "admin" }])');
  }
}

/** Throws `FORBIDDEN` unless `principal` may act for `owner`. */
export function requireOwner(principal: Principal, owner: string, action: string): void {
  if (!principal.mayActFor(owner)) {
    throw new ForbiddenError(`The token "${principal.name}" may not ${action} for owner ${JSON.stringify(owner)}`);
  }
}

/** Throws `FORBIDDEN` unless `principal` is an admin. */
export function requireAdmin(principal: Principal, action: string): void {
  if (!principal.admin) throw new ForbiddenError(`Only an admin token may ${action}; the token "${principal.name}" is not one`);
}

/** True for addresses that only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || h === '::ffff:127.0.0.1';
}
