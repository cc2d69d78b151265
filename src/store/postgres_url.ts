/**
 * The `postgres://` URL of a PostgreSQL store, read the way libpq reads it
 * (an empty host, `?host=/run/postgresql` for a socket directory), with no
 * driver loaded: the config checks it when it loads, the connection uses
 * the parts. Pure.
 *
 * @module
 */

import { errorMessage } from "../util/errors.ts";

/** The `sslmode` values the URL may carry. */
export const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-full"] as const;

/** One of {@link SSL_MODES}. */
export type SslMode = typeof SSL_MODES[number];

/** What a URL says; every part may be missing. */
export interface PostgresUrlParts {
  /** Host name, or the directory of a unix socket. */
  host: string | undefined;
  port: number | undefined;
  database: string | undefined;
  user: string | undefined;
  password: string | undefined;
  sslmode: SslMode | undefined;
}

const PARAMETERS = ["host", "port", "dbname", "user", "password", "sslmode"];

/**
 * Reads a `postgres://` or `postgresql://` URL. Throws a TypeError whose
 * message starts with `"url"` and names what is wrong: not a URL, an
 * unknown parameter, a bad port or sslmode.
 */
export function parsePostgresUrl(text: string): PostgresUrlParts {
  if (!/^postgres(ql)?:\/\//.test(text)) {
    throw new TypeError(`"url" must start with postgres://, got ${JSON.stringify(text)}`);
  }
  // libpq allows an empty host (`postgres://user@/db?host=/run/postgresql`);
  // the URL parser does not, so parse it with a stand-in host.
  const emptyHost = /^postgres(ql)?:\/\/([^/?#]*@)?(?=[/?#]|$)/.test(text);
  let url: URL;
  try {
    url = new URL(
      emptyHost ? text.replace(/^(postgres(ql)?:\/\/([^/?#]*@)?)/, "$1empty.invalid") : text,
    );
  } catch (error) {
    throw new TypeError(`"url" is not a valid URL: ${errorMessage(error)}`, { cause: error });
  }
  const parts: PostgresUrlParts = {
    host: url.hostname && !emptyHost ? decodeURIComponent(url.hostname) : undefined,
    port: url.port ? Number(url.port) : undefined,
    database: url.pathname.length > 1 ? decodeURIComponent(url.pathname.slice(1)) : undefined,
    user: url.username ? decodeURIComponent(url.username) : undefined,
    password: url.password ? decodeURIComponent(url.password) : undefined,
    sslmode: undefined,
  };
  for (const [key, value] of url.searchParams) {
    if (key === "host") parts.host = value;
    else if (key === "port") parts.port = Number(value);
    else if (key === "dbname") parts.database = value;
    else if (key === "user") parts.user = value;
    else if (key === "password") parts.password = value;
    else if (key === "sslmode") {
      if (!(SSL_MODES as readonly string[]).includes(value)) {
        throw new TypeError(`"url" sslmode must be one of ${SSL_MODES.join(", ")}, got "${value}"`);
      }
      parts.sslmode = value as SslMode;
    } else {
      throw new TypeError(
        `"url" parameter "${key}" is not supported; supported: ${PARAMETERS.join(", ")}`,
      );
    }
  }
  const port = parts.port;
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    throw new TypeError(`"url" port must be an integer from 1 to 65535, got ${port}`);
  }
  return parts;
}
