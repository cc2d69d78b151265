/**
 * table-allocator as a library: the v1 protocol codec and its message
 * authentication, the lease storage
 * API with its SQLite and PostgreSQL backends, the table allocator, the
 * control protocol and its client, and the config parser.
 *
 * ```ts
 * import { decodeRequest, SqliteLeaseStore, clientIdOf } from "./mod.ts";
 * const store = SqliteLeaseStore.open("/var/lib/table-allocator/leases.db");
 * const { leases, token } = await store.lookup(clientIdOf({ family: 2, ifname: "eth1", address: "192.0.2.1" }));
 * ```
 *
 * @module
 */

export {
  Command,
  decodeNoticeObject,
  decodeReply,
  decodeRequest,
  encodeError,
  encodeNotice,
  encodeReply,
  encodeRequest,
  type ErrorCode,
  type Identity,
  identityName,
  isLeasableTable,
  MAX_REPLY_BYTES,
  MAX_REQUEST_BYTES,
  type Notice,
  type NoticeKind,
  PROTOCOL_VERSION,
  ProtocolError,
  type Reply,
  type Request,
  validateIdentity,
} from "./src/protocol/v1.ts";
export {
  Authenticator,
  type AuthVerdict,
  generatePsk,
  type MacCheck,
  parsePsk,
  type Psk,
  ReplayGuard,
  sign,
  verifyMac,
} from "./src/protocol/auth.ts";
export {
  BadCursorError,
  clientIdOf,
  commitChange,
  ConcurrencyError,
  type ExpiryListener,
  type FlushOptions,
  type Lease,
  type LeasePage,
  type LeaseState,
  type LeaseStore,
  type LeaseToken,
  listAll,
  type ListOptions,
  type LookupResult,
  StoreLostError,
  type TableRun,
  TransientError,
} from "./src/store/lease_store.ts";
export {
  SCHEMA_VERSION,
  SqliteLeaseStore,
  type SqliteStoreOptions,
  type WalStats,
} from "./src/store/sqlite_store.ts";
// The PostgreSQL backend loads its npm driver: openStore() imports it only when
// a config asks for it; the class itself is in src/store/postgres_store.ts.
export { openStore, type OpenStoreOptions } from "./src/store/open_store.ts";
// Opening the original C server's SQLite file imports its leases once.
export type {
  CImportOptions,
  CRow,
  ImportReport,
  SkippedRow,
} from "./src/store/c_database_import.ts";
export type { PostgresLeaseStore } from "./src/store/postgres_store.ts";
export { DoubleFreeError, PoolExhaustedError, TablePool } from "./src/allocator/table_pool.ts";
export { AddrFamily, familyName } from "./src/net/family.ts";
export {
  type AuthConfig,
  ConfigError,
  type FamilyFlags,
  loadConfig,
  parseConfig,
  type PoolConfig,
  type ReservationConfig,
  type ServerConfig,
  type StoreConfig,
  type TableRange,
  type TrustConfig,
  validateConfig,
} from "./config/config.ts";
export type {
  LeaseEventKind,
  LogLevel,
  OperationsConfig,
  OutputConfig,
  OutputKind,
} from "./config/operations.ts";
export {
  BadReplyError,
  type ControlArgs,
  ControlClient,
  type ControlClientOptions,
  ControlError,
  type ControlOp,
  DEFAULT_SOCKET,
  DEFAULT_TIMEOUT_MS,
  NotRunningError,
  TimeoutError,
} from "./src/control/client.ts";
export {
  ControlCommand,
  type ControlReply,
  type ControlRequest,
  type ControlResults,
  decodeControlReply,
  decodeControlRequest,
  encodeControlReply,
  encodeControlRequest,
  type HoldView,
  type LeaseSelector,
  type LeaseView,
  type PoolView,
  type ReloadView,
  type StatusView,
} from "./src/control/protocol.ts";
export { VERSION } from "./src/version.ts";
