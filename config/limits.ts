/**
 * Bounds of the configuration values.
 *
 * @module
 */

/** Longest socket_path the original accepts. */
export const MAX_SOCKET_PATH = 106;
/** Largest pool: 16 Mi tables (2 MiB of bitmap). */
export const MAX_NUM_TABLES = 1 << 24;
/** Longest lease: ten years. */
export const MAX_TABLE_TIMEOUT = 10 * 365 * 24 * 3600;
/** Highest routing table number (u32). */
export const MAX_TABLE = 0xffff_ffff;
/** Tables the kernel reserves: unspec, default, main, local. */
export const RESERVED_TABLES: readonly number[] = [0, 253, 254, 255];
/**
 * The server socket's kernel queue when the config names none: what
 * systemd gives every socket of a host it boots (`net.unix.max_dgram_qlen`).
 */
export const DEFAULT_SOCKET_QUEUE_LENGTH = 512;
/** Longest kernel queue `socket_queue_length` may ask for. */
export const MAX_SOCKET_QUEUE_LENGTH = 65_536;
