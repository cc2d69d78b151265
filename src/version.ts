/** The version of table-allocator, printed by `--version` and in status replies. */
export const VERSION = "0.1.0";
