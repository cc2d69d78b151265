/** The one version of table-allocator: every program prints it with `--version`, status replies carry it, packages are named by it. */
export const VERSION = "1.0.0";
