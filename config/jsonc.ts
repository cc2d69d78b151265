/**
 * Strips `//` and `/* *\/` comments from JSON text, as the original's config
 * parser (json-c) accepts them. Strings are left untouched; positions of
 * the remaining text are kept (comments become spaces) so JSON.parse error
 * offsets still point into the original file.
 *
 * @module
 */

/** Returns `text` with comments replaced by spaces; throws on an unterminated block comment. */
export function stripJsonComments(text: string): string {
  let out = "";
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === "/" && text[i + 1] === "/") {
      let j = i;
      while (j < text.length && text[j] !== "\n") j++;
      out += " ".repeat(j - i);
      i = j;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      if (end < 0) throw new SyntaxError(`unterminated /* comment at offset ${i}`);
      out += text.slice(i, end + 2).replace(/[^\n]/g, " ");
      i = end + 2;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}
