/**
 * `dirname`, `basename` and `resolve` of POSIX paths, as `node:path`
 * computes them, without loading node compatibility (about 7 ms of the
 * server's start). Pure but for `resolve`'s working directory.
 *
 * @module
 */

/** The path without trailing slashes (a path of slashes only is `/`). */
function trimmed(path: string): string {
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  return path.slice(0, end);
}

/** The directory part of `path`: `.` for a bare name, `/` at the root. */
export function dirname(path: string): string {
  if (path === "") return ".";
  const p = trimmed(path);
  const slash = p.lastIndexOf("/");
  if (slash < 0) return ".";
  return slash === 0 ? "/" : p.slice(0, slash);
}

/** The last part of `path` (trailing slashes ignored). */
export function basename(path: string): string {
  const p = trimmed(path);
  if (p === "/") return "";
  return p.slice(p.lastIndexOf("/") + 1);
}

/** `path` made absolute against `cwd` (the working directory), `.` and `..` worked out. */
export function resolve(path: string, cwd: string = Deno.cwd()): string {
  const parts: string[] = [];
  for (const part of `${path.startsWith("/") ? "" : `${cwd}/`}${path}`.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return `/${parts.join("/")}`;
}
