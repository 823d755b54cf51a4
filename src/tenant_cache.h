/*-------------------------------------------------------------------------
 *
 * tenant_cache.h
 *		Declarations shared by the modules of the tenant_cache extension.
 *
 * tenant_cache turns writes on watched tables into tenant-scoped Redis glob
 * patterns (trigger.c, glob.c, depcache.c), keeps them in a transaction-local
 * set that is written to the durable queue at commit (queue.c), and drains
 * that queue into Redis from a background worker (worker.c, redis.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef TENANT_CACHE_H
#define TENANT_CACHE_H

#include "postgres.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/block.h"

#define TC_SCHEMA			"tenant_cache"
#define TC_QUEUE_TABLE		"pending"
#define TC_INBOX_TABLE		"inbox"
#define TC_DEP_TABLE		"dependency"
#define TC_MAX_PATTERN_LEN	1024
#define TC_MAX_PATTERN_STARS 8
#define TC_MAX_DATABASES	16	/* in tenant_cache.database */

/* Settings (tenant_cache.c) */
extern char *tc_database;		/* the setting, a list */
extern int	tc_ndatabases;		/* its databases, parsed: one worker each */
extern char **tc_databases;
extern int	tc_database_index(const char *dbname);
extern char *tc_redis_host;
extern int	tc_redis_port;
extern int	tc_redis_db;
extern char *tc_redis_username;
extern char *tc_redis_password_file;

/* tenant_cache.redis_mode */
typedef enum TcRedisMode
{
	TC_REDIS_STANDALONE,
	TC_REDIS_CLUSTER,
	TC_REDIS_SENTINEL
} TcRedisMode;
extern int	tc_redis_mode;
extern char *tc_redis_nodes;
extern char *tc_sentinel_master;
extern char *tc_key_format;
extern int	tc_connect_timeout_ms;
extern int	tc_command_timeout_ms;
extern int	tc_batch_size;
extern int	tc_poll_interval_ms;
extern int	tc_scan_count;
extern int	tc_max_retry_interval_ms;
extern int	tc_repeat_after_ms;
extern int	tc_debug_pause_before_commit_ms;
extern int	tc_debug_pause_after_ride_ms;
extern bool tc_merge_scans;
extern char *tc_publish_channel;

/* Shared state and worker wake-up (tenant_cache.c) */
/* Inbox blocks written by commits since the worker last read the inbox. */
#define TC_INBOX_BLOCK_SLOTS 8
typedef struct TcInboxBlocks
{
	int			n;
	BlockNumber blocks[TC_INBOX_BLOCK_SLOTS];
	bool		overflow;		/* more than fit: read from min on */
	BlockNumber min;
} TcInboxBlocks;

extern void tc_wake_worker(BlockNumber inbox_block);
extern void tc_take_inbox_blocks(TcInboxBlocks *out);
extern void tc_worker_attach(int index);

/* Globs waiting in committed, unread inbox rows (twins.c) */
typedef struct TcTwinTicket
{
	int			slot;			/* -1: no worker for this database */
	uint64		epoch;			/* 0: nothing to register */
} TcTwinTicket;

extern Size tc_twins_shmem_size(void);
extern void tc_twins_shmem_init(void);
extern bool tc_twins_ride(int n, char *const *globs, const uint32 *hashes,
						  TcTwinTicket *ticket);
extern void tc_twins_ride_end(const TcTwinTicket *ticket);
extern void tc_twins_register(int n, char *const *globs, const uint32 *hashes,
							  const TcTwinTicket *ticket);
extern void tc_twins_attach(int index);
extern int64 tc_twins_new_epoch(void);

/* Dependency scopes, ordered: each level fixes the ones before it. */
typedef enum TcScope
{
	TC_SCOPE_GLOBAL = 0,
	TC_SCOPE_TENANT = 1,
	TC_SCOPE_CLIENT = 2,
	TC_SCOPE_BU = 3
} TcScope;

/* Level indexes for the values of one row or call. */
#define TC_LEVEL_TENANT 0
#define TC_LEVEL_CLIENT 1
#define TC_LEVEL_BU		2
#define TC_NLEVELS		3

/* Glob building (glob.c) */
typedef struct TcKeyFormat TcKeyFormat;
extern TcKeyFormat *tc_parse_key_format(const char *format, char **errmsg);
extern const TcKeyFormat *tc_current_key_format(void);
extern void tc_set_current_key_format(TcKeyFormat *kf);
extern uint64 tc_key_format_generation(void);
extern void tc_append_escaped(StringInfo buf, const char *value);

/*
 * A registered pattern, parsed (glob.c): runs of glob text as written, and
 * placeholders "{column}" replaced by a row's escaped value.  Column
 * indexes point into a TcColumns list shared by the patterns of a model.
 */
typedef struct TcColumns
{
	int			n;
	char	  **names;
} TcColumns;

typedef struct TcPatternPart
{
	const char *text;			/* glob text, or NULL for a placeholder */
	int			len;
	int			column;			/* placeholder: index into its TcColumns */
} TcPatternPart;

typedef struct TcPattern
{
	bool		exact;			/* ended in an unescaped "$": no "*" added */
	int			nparts;
	TcPatternPart *parts;
} TcPattern;

extern TcPattern *tc_parse_pattern(const char *pattern, TcColumns *columns);
extern void tc_check_pattern(const char *pattern);
extern bool tc_pattern_matches_everything(const TcPattern *pattern);
extern void tc_build_glob(StringInfo buf, const TcKeyFormat *kf,
						  const char *const values[TC_NLEVELS],
						  const TcPattern *pattern,
						  const char *const *colvals);
extern bool tc_glob_pattern_part(const TcKeyFormat *kf, const char *glob,
								 int *start, int *len);
extern bool tc_glob_read_back(const TcKeyFormat *kf, const char *glob,
							  char *values[TC_NLEVELS], int *pattern_start,
							  int *pattern_len);

/* Dependency cache (depcache.c) */
typedef struct TcDependency
{
	char	   *pattern;
	TcPattern  *parsed;			/* its placeholders index the model's columns */
	TcScope		scope;
} TcDependency;

typedef struct TcModelDeps
{
	char		model[256];		/* hash key; length checked by the catalog */
	int			ndeps;
	TcDependency *deps;
	TcColumns	columns;		/* columns named by placeholders of any pattern */
} TcModelDeps;

extern void tc_depcache_init(void);
extern const TcModelDeps *tc_lookup_model(const char *model);
extern uint64 tc_depcache_generation(void);
extern Oid	tc_catalog_relid(const char *relname, bool missing_ok);

/* Transaction-local queue (queue.c) */
extern void tc_queue_init(void);
extern int	tc_queue_model_values(const TcModelDeps *deps,
								  const char *const values[TC_NLEVELS],
								  const char *const *colvals);
extern char **tc_model_globs(const TcModelDeps *deps,
							 const char *const values[TC_NLEVELS],
							 const char *const *colvals, MemoryContext cxt);
extern bool tc_queue_glob(const char *glob);
extern bool tc_queue_row_seen(const char *key, uint32 len);
extern void tc_queue_row_mark(const char *key, uint32 len);
extern uint64 tc_queue_seen_epoch(void);
extern void tc_check_can_queue(void);
struct RelationData;			/* utils/rel.h: Relation */
extern void tc_check_inbox_shape(struct RelationData *rel);

/* SQL-callable functions' shared pieces (sqlfuncs.c) */
extern char *tc_text_arg(FunctionCallInfo fcinfo, int n);
extern TcPattern *tc_call_glob(StringInfo buf, const char *pattern,
							   const char *const values[TC_NLEVELS]);

/* Inbox to queue (absorb.c) */
typedef struct TcInboxGlob
{
	char	   *glob;
	TimestampTz enqueued_at;	/* of the earliest commit that queued it */
} TcInboxGlob;

extern int	tc_absorb_inbox(TcInboxGlob **fresh, int *nfresh);
extern void tc_absorb_reset(void);
extern bool tc_absorb_has_more(void);

/* Trigger (trigger.c) */
extern void tc_trigger_init(void);
extern bool tc_is_invalidate_trigger(Oid fn);

/* WHEN clauses of the row triggers, prepared once per backend (when.c) */
extern void tc_when_init(void);
struct EState;
extern void tc_prepare_when_clauses(struct EState *estate, int operation);

/* Worker (worker.c) */
extern void tc_register_worker(void);
extern PGDLLEXPORT void tc_worker_main(Datum main_arg);
struct _SPI_plan;				/* executor/spi.h: SPIPlanPtr */
extern int	tc_spi_run(struct _SPI_plan **plan, const char *sql, int nargs,
					   Oid *argtypes, Datum *args, int expected);



/* Redis client (redis.c) */
typedef enum TcRedisStatus
{
	TC_REDIS_OK,
	TC_REDIS_ERROR_REPLY,		/* Redis refused this command; connection ok */
	TC_REDIS_IO_ERROR			/* connection lost or timed out; now closed */
} TcRedisStatus;

extern bool tc_redis_connect(char **errmsg);
extern bool tc_redis_is_connected(void);
extern void tc_redis_disconnect(void);
extern bool tc_redis_last_error_was_timeout(void);
extern char *tc_redis_settings_signature(void);
extern const char *tc_redis_address(void);
extern const char *tc_redis_endpoint(const char *host, int port);
extern bool tc_redis_confirm_master(void);

/* Redis Cluster (redis.c): one connection per master, selected per key. */
extern int	tc_redis_key_slot(const char *key, size_t len);
extern int	tc_redis_node_count(void);
extern void tc_redis_select_node(int i);
extern int	tc_redis_key_node(const char *key, size_t len);
extern char *tc_redis_cluster_state(bool *stable, char **errmsg);
extern bool tc_redis_refresh_slots(char **errmsg);

/* A host:port of tenant_cache.redis_nodes (redis.c) */
#define TC_MAX_REDIS_NODES	64
#define TC_MAX_HOST_LEN		255
typedef struct TcRedisAddr
{
	char		host[TC_MAX_HOST_LEN + 1];
	int			port;
} TcRedisAddr;
extern int	tc_parse_redis_nodes(const char *list, TcRedisAddr *out, int max,
								 char **errmsg);

/* Pipelined commands (redis.c): append, then one exchange of replies. */
struct redisReply;
extern bool tc_redis_append_argv(int argc, const char **argv, const size_t *lens);
extern bool tc_redis_append_scan(const char *cursor, const char *match,
								 size_t matchlen);
extern TcRedisStatus tc_redis_exchange(int n, struct redisReply **replies,
									   char **errmsg);
extern bool tc_redis_error_reply(struct redisReply *reply, const char *what,
								 char **errmsg);
extern bool tc_redis_valid_scan_reply(struct redisReply *reply);
extern TcRedisStatus tc_redis_protocol_error(const char *what, char **errmsg);

/*
 * Applying a batch of distinct globs to Redis (apply.c).  The worker fills
 * in glob; tc_apply_globs() fills in the rest.
 */
typedef struct TcGlobJob
{
	const char *glob;			/* in: a distinct glob of the batch */
	bool		done;			/* out: false: not attempted, left queued */
	TcRedisStatus status;		/* out, when done: OK, refused, I/O error */
	char	   *error;			/* out: why, when status is not OK */
	int64		deleted;		/* out: keys deleted (see apply.c) */
	bool		literal;		/* out: a single key, cleared without SCAN */
} TcGlobJob;

extern bool tc_apply_globs(TcGlobJob *jobs, int n, int time_limit_ms);

/* Announcing applied globs on a pub/sub channel (publish.c) */
typedef struct TcPublishItem
{
	const char *glob;
	int64		keys_deleted;
	TimestampTz committed_at;	/* enqueued_at of its oldest entry */
} TcPublishItem;

extern void tc_publish_applied(const TcPublishItem *items, int n);

/* Generic commands for the SQL toolbox (redis.c; replies are hiredis') */
struct redisReply;
extern TcRedisStatus tc_redis_command(int argc, const char **argv,
									  const size_t *lens,
									  struct redisReply **reply,
									  char **errmsg);
extern TcRedisStatus tc_redis_pipeline(int ncmds, const int *argc,
									   const char **const *argv,
									   const size_t *const *lens,
									   struct redisReply **replies,
									   char **errmsg);
extern bool tc_redis_reply_is_error(struct redisReply *reply, const char *what,
									char **errmsg);

/* Worker statistics in shared memory (stats.c) */
typedef enum TcWorkerState
{
	TC_WORKER_STOPPED = 0,		/* no worker process */
	TC_WORKER_STARTING,
	TC_WORKER_NO_EXTENSION,		/* waiting for CREATE EXTENSION */
	TC_WORKER_IDLE,
	TC_WORKER_APPLYING,
	TC_WORKER_RETRYING			/* Redis failed; waiting for the backoff */
} TcWorkerState;

typedef struct TcWorkerStatus
{
	int			pid;			/* 0 when no worker process is alive */
	TcWorkerState state;
	bool		redis_connected;
	char		last_error[256];	/* "" when none since stats_reset */
	TimestampTz last_error_at;
	TimestampTz last_success_at;
} TcWorkerStatus;

extern void tc_stats_init(void);
extern void tc_stats_worker_started(int index);
extern void tc_stats_worker_state(TcWorkerState state);
extern void tc_stats_queued(const char *glob);
extern void tc_stats_queued_n(const char *glob, int64 n);
extern void tc_stats_scan_pass(void);
extern void tc_stats_applied(const char *glob, int64 keys_deleted,
							 TimestampTz enqueued_at);
extern void tc_stats_redis_error(const char *errmsg);
extern bool tc_stats_worker_status(TcWorkerStatus *status);
extern const char *tc_worker_state_name(TcWorkerState state);

/* SQL toolbox (toolbox.c) */
extern int	tc_health_max_queue_age_ms;
extern int	tc_toolbox_time_limit_ms;
extern void tc_toolbox_init(void);

#endif							/* TENANT_CACHE_H */
