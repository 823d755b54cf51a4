/*-------------------------------------------------------------------------
 *
 * redis.c
 *		Redis client of the worker: hiredis in non-blocking mode.
 *
 * hiredis only formats commands and parses replies; every wait for the
 * socket is a wait on the latch too (a WaitEventSet per connection), so
 * SIGTERM, SIGHUP and postmaster death are noticed at once even while
 * Redis hangs, and each command has a
 * deadline of tenant_cache.command_timeout_ms (read afresh for every command,
 * so it holds after every reconnect).  The password is read from
 * tenant_cache.redis_password_file at each connect and never kept, shown or
 * logged.
 *
 * tenant_cache.redis_mode says where Redis is: one server (standalone), the
 * master that Redis Sentinel names (asked again before every batch, see
 * tc_redis_confirm_master), or a Redis Cluster: a connection per master,
 * the slot map from CLUSTER SLOTS, keys routed by their slot, MOVED and ASK
 * replies followed inside tc_redis_exchange() (so apply.c sees the final
 * replies), and tc_redis_cluster_state() for apply.c to tell whether slots
 * moved during a SCAN pass.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "tenant_cache.h"

#define TC_MAX_PASSWORD_LEN 4096

/*
 * The servers commands go to: one (standalone, or the master the sentinels
 * name), or a cluster's masters.  conn is the one the next command goes to.
 */
typedef struct RedisNode
{
	TcRedisAddr addr;
	redisContext *ctx;
} RedisNode;

static RedisNode nodes[TC_MAX_REDIS_NODES];
static int	nnodes = 0;
static redisContext *conn = NULL;
static bool last_error_was_timeout = false;

/* Cluster mode: the master owning each slot (index into nodes[]). */
#define TC_CLUSTER_SLOTS 16384
static int8 slot_owner[TC_CLUSTER_SLOTS];
static bool slots_moved = false;	/* a MOVED reply: read the map again */

/*
 * Cluster mode: copies of the commands appended since the last exchange, to
 * send them again to another node after a MOVED or ASK redirection.
 */
static char **pending_cmds = NULL;
static int *pending_lens = NULL;
static int	npending = 0;
static int	pending_cap = 0;

/* Sentinel mode: the connection to the sentinel that last answered. */
static redisContext *sentinel_conn = NULL;
static TcRedisAddr sentinel_addr;
static bool on_sentinel = false;	/* conn is a sentinel connection */
static TimestampTz sentinels_retry_at = 0;	/* none answered: ask again then */
static int	first_sentinel = 0;	/* the one that answered last: asked first */

#define TC_SENTINEL_RETRY_MS 2000

/*
 * What wait_socket() waits on for a connection's socket: the latch,
 * postmaster death and the socket, in a set created once per connection
 * (not for every wait, as WaitLatchOrSocket() does) and freed with it
 * (free_ctx).
 */
typedef struct SocketWait
{
	pgsocket	fd;
	WaitEventSet *set;
	int			sock_pos;		/* the socket's entry in set */
	uint32		events;			/* what that entry waits for now */
} SocketWait;

#define TC_MAX_SOCKET_WAITS 16	/* more connections: sets made again */
static SocketWait socket_waits[TC_MAX_SOCKET_WAITS];
static int	nsocket_waits = 0;

static SocketWait *
find_socket_wait(pgsocket fd)
{
	for (int i = 0; i < nsocket_waits; i++)
		if (socket_waits[i].fd == fd)
			return &socket_waits[i];
	return NULL;
}

static void
forget_socket_wait(pgsocket fd)
{
	SocketWait *w = find_socket_wait(fd);

	if (w == NULL)
		return;
	FreeWaitEventSet(w->set);
	*w = socket_waits[--nsocket_waits];
}

/* Every connection is freed here: its wait set goes first. */
static void
free_ctx(redisContext *ctx)
{
	forget_socket_wait(ctx->fd);
	redisFree(ctx);
}

/* The wait set of socket fd, waiting for event (created if needed). */
static SocketWait *
socket_wait(pgsocket fd, uint32 event)
{
	SocketWait *w = find_socket_wait(fd);

	if (w == NULL)
	{
		if (nsocket_waits == TC_MAX_SOCKET_WAITS)
			forget_socket_wait(socket_waits[0].fd);
		w = &socket_waits[nsocket_waits];
		w->set = CreateWaitEventSet(TopMemoryContext, 3);
		w->fd = fd;
		nsocket_waits++;
		AddWaitEventToSet(w->set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(w->set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		w->sock_pos = AddWaitEventToSet(w->set, event, fd, NULL, NULL);
		w->events = event;
	}
	else if (w->events != event)
	{
		ModifyWaitEvent(w->set, w->sock_pos, event, NULL);
		w->events = event;
	}
	return w;
}

bool
tc_redis_is_connected(void)
{
	return nnodes > 0 || conn != NULL;
}

static void
clear_pending(void)
{
	for (int i = 0; i < npending; i++)
		redisFreeCommand(pending_cmds[i]);
	npending = 0;
}

/* Close every connection. */
void
tc_redis_disconnect(void)
{
	clear_pending();
	for (int i = 0; i < nnodes; i++)
	{
		if (nodes[i].ctx == conn)
			conn = NULL;
		if (nodes[i].ctx != NULL)
			free_ctx(nodes[i].ctx);
		nodes[i].ctx = NULL;
	}
	nnodes = 0;
	if (conn == sentinel_conn)
		conn = NULL;
	if (sentinel_conn != NULL)
		free_ctx(sentinel_conn);
	sentinel_conn = NULL;
	if (conn != NULL)
		free_ctx(conn);
	conn = NULL;
}

/*
 * Drop conn after an I/O error: a sentinel's connection alone, else every
 * connection (in a cluster, the next connect reads the topology again).
 */
static void
drop_conn(void)
{
	if (on_sentinel)
	{
		if (conn != NULL)
			free_ctx(conn);
		conn = NULL;
		sentinel_conn = NULL;
	}
	else
		tc_redis_disconnect();
}

/* The settings a connection depends on; a change means reconnect. */
char *
tc_redis_settings_signature(void)
{
	return psprintf("%s|%d|%d|%s|%s|%d|%s|%s", tc_redis_host, tc_redis_port,
					tc_redis_db, tc_redis_username, tc_redis_password_file,
					tc_redis_mode, tc_redis_nodes, tc_sentinel_master);
}

/*
 * A server, for messages: "host:port", or the path of a Unix-domain socket
 * (a host starting with '/').  The string is good until the next call.
 */
const char *
tc_redis_endpoint(const char *host, int port)
{
	static char buf[TC_MAX_HOST_LEN + 16];

	if (host[0] == '/')
		strlcpy(buf, host, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "%s:%d", host, port);
	return buf;
}

/* Where Redis is, for messages: "host:port", or how it is found. */
const char *
tc_redis_address(void)
{
	static char buf[2 * TC_MAX_HOST_LEN + 64];

	if (tc_redis_mode == TC_REDIS_STANDALONE)
		strlcpy(buf, tc_redis_endpoint(tc_redis_host, tc_redis_port), sizeof(buf));
	else if (tc_redis_mode == TC_REDIS_SENTINEL && nnodes > 0)
		snprintf(buf, sizeof(buf), "%s (master \"%s\" of the sentinels)",
				 tc_redis_endpoint(nodes[0].addr.host, nodes[0].addr.port),
				 tc_sentinel_master);
	else if (tc_redis_mode == TC_REDIS_SENTINEL)
		snprintf(buf, sizeof(buf), "master \"%s\" of the sentinels",
				 tc_sentinel_master);
	else if (nnodes > 0)
		snprintf(buf, sizeof(buf), "cluster of %d masters", nnodes);
	else
		snprintf(buf, sizeof(buf), "cluster seeded by %s",
				 tc_redis_nodes[0] ? tc_redis_nodes : tc_redis_host);
	return buf;
}

/*
 * Parse a comma-separated list of host:port ("[v6addr]:port" too) into
 * out[] (may be NULL, to check only); the number of entries, or -1 with
 * *errmsg.
 */
int
tc_parse_redis_nodes(const char *list, TcRedisAddr *out, int max, char **errmsg)
{
	int			n = 0;
	const char *p = list;

	for (;;)
	{
		const char *start,
				   *end,
				   *colon = NULL;
		char	   *portend;
		long		port;
		size_t		hostlen;

		while (*p == ' ' || *p == '\t')
			p++;
		start = p;
		while (*p && *p != ',')
			p++;
		end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		for (const char *q = start; q < end; q++)
			if (*q == ':')
				colon = q;
		if (start == end)
		{
			*errmsg = pstrdup("An entry of the list is empty.");
			return -1;
		}
		if (colon == NULL || colon == start || colon + 1 == end)
		{
			*errmsg = psprintf("Entry \"%.*s\" is not host:port.", (int) (end - start), start);
			return -1;
		}
		errno = 0;
		port = strtol(colon + 1, &portend, 10);
		if (errno != 0 || portend != end || port < 1 || port > 65535)
		{
			*errmsg = psprintf("Entry \"%.*s\" has no valid port (1 to 65535).",
							   (int) (end - start), start);
			return -1;
		}
		if (*start == '[' && colon[-1] == ']')
			start++, hostlen = colon - 1 - start;
		else
			hostlen = colon - start;
		if (hostlen == 0 || hostlen > TC_MAX_HOST_LEN)
		{
			*errmsg = psprintf("Entry \"%.*s\" has no valid host.", (int) (end - start), start);
			return -1;
		}
		if (n == max)
		{
			*errmsg = psprintf("The list has more than %d entries.", max);
			return -1;
		}
		if (out != NULL)
		{
			memcpy(out[n].host, start, hostlen);
			out[n].host[hostlen] = '\0';
			out[n].port = (int) port;
		}
		n++;
		if (*p == '\0')
			return n;
		p++;
	}
}

static TimestampTz
deadline_after(int ms)
{
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
}

/*
 * Wait until the socket is ready for 'event', handling interrupts meanwhile.
 * False when the deadline passed first.
 */
static bool
wait_socket(int event, TimestampTz deadline)
{
	SocketWait *w = socket_wait(conn->fd, event);

	for (;;)
	{
		long		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
															  deadline);
		WaitEvent	occurred;

		if (timeout <= 0)
			return false;
		if (WaitEventSetWait(w->set, timeout, &occurred, 1, PG_WAIT_EXTENSION) == 0)
			continue;			/* timed out: the deadline decides */
		if (occurred.events & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
		if (occurred.events & event)
			return true;
	}
}

/* Record an I/O failure: close the connection, describe it. */
static TcRedisStatus
io_error(char **errmsg, const char *what)
{
	last_error_was_timeout = false;
	if (conn != NULL && conn->err)
		*errmsg = psprintf("%s: %s", what, conn->errstr);
	else
		*errmsg = pstrdup(what);
	drop_conn();
	return TC_REDIS_IO_ERROR;
}

/* An I/O error that is a timeout: Redis is slow or hung, not gone. */
static TcRedisStatus
timeout_error(char **errmsg, const char *what)
{
	io_error(errmsg, what);
	last_error_was_timeout = true;
	return TC_REDIS_IO_ERROR;
}

bool
tc_redis_last_error_was_timeout(void)
{
	return last_error_was_timeout;
}

static TcRedisStatus
flush_output(TimestampTz deadline, char **errmsg)
{
	int			done = 0;

	for (;;)
	{
		if (redisBufferWrite(conn, &done) != REDIS_OK)
			return io_error(errmsg, "could not send to Redis");
		if (done)
			return TC_REDIS_OK;
		if (!wait_socket(WL_SOCKET_WRITEABLE, deadline))
			return timeout_error(errmsg, "timed out sending to Redis");
	}
}

static TcRedisStatus
read_reply(redisReply **reply, TimestampTz deadline, char **errmsg)
{
	for (;;)
	{
		void	   *r = NULL;

		if (redisGetReplyFromReader(conn, &r) != REDIS_OK)
			return io_error(errmsg, "could not parse Redis reply");
		if (r != NULL)
		{
			*reply = r;
			return TC_REDIS_OK;
		}
		if (!wait_socket(WL_SOCKET_READABLE, deadline))
			return timeout_error(errmsg, "timed out waiting for Redis");
		if (redisBufferRead(conn) != REDIS_OK)
			return io_error(errmsg, "could not read from Redis");
	}
}

/* Send one command and wait for its reply (caller frees it), within ms. */
static TcRedisStatus
command_argv_within(int argc, const char **argv, const size_t *lens,
					redisReply **reply, char **errmsg, int ms)
{
	TimestampTz deadline = deadline_after(ms);
	TcRedisStatus st;

	if (redisAppendCommandArgv(conn, argc, argv, lens) != REDIS_OK)
		return io_error(errmsg, "could not format Redis command");
	st = flush_output(deadline, errmsg);
	if (st != TC_REDIS_OK)
		return st;
	return read_reply(reply, deadline, errmsg);
}

/* Send one command and wait for its reply (caller frees it). */
static TcRedisStatus
command_argv(int argc, const char **argv, const size_t *lens,
			 redisReply **reply, char **errmsg)
{
	return command_argv_within(argc, argv, lens, reply, errmsg,
							   tc_command_timeout_ms);
}

/* An error reply, as printable ASCII (it is stored in a text column). */
static bool
is_error_reply(redisReply *reply, const char *what, char **errmsg)
{
	char	   *text;
	size_t		len;

	if (reply->type != REDIS_REPLY_ERROR)
		return false;
	len = Min(reply->len, 512);
	text = pnstrdup(reply->str, len);
	for (size_t i = 0; i < len; i++)
		if ((unsigned char) text[i] < 0x20 || (unsigned char) text[i] > 0x7e)
			text[i] = '?';
	*errmsg = psprintf("%s: %s", what, text);
	pfree(text);
	return true;
}

/*
 * Read the password file: a regular file owned by the server's user and not
 * readable by group or others.  Trailing newlines are dropped.
 */
static char *
read_password(char *buf, char **errmsg)
{
	const char *path = tc_redis_password_file;
	struct stat st;
	ssize_t		n;
	int			fd = open(path, O_RDONLY | PG_BINARY, 0);

	if (fd < 0)
	{
		*errmsg = psprintf("could not open Redis password file \"%s\": %m", path);
		return NULL;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		*errmsg = psprintf("Redis password file \"%s\" is not a regular file", path);
	else if (st.st_uid != geteuid())
		*errmsg = psprintf("Redis password file \"%s\" must be owned by the database server's user", path);
	else if (st.st_mode & (S_IRWXG | S_IRWXO))
		*errmsg = psprintf("Redis password file \"%s\" has group or world access; it must be u=rw (0600) or less", path);
	else
	{
		n = read(fd, buf, TC_MAX_PASSWORD_LEN);
		if (n < 0)
			*errmsg = psprintf("could not read Redis password file \"%s\": %m", path);
		else if (n == TC_MAX_PASSWORD_LEN)
			*errmsg = psprintf("Redis password file \"%s\" is too long", path);
		else
		{
			while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
				n--;
			buf[n] = '\0';
			close(fd);
			return buf;
		}
	}
	close(fd);
	return NULL;
}

static bool
authenticate(char **errmsg)
{
	char		password[TC_MAX_PASSWORD_LEN + 1];
	const char *argv[3];
	size_t		lens[3];
	int			argc = 0;
	redisReply *reply = NULL;
	bool		ok;

	if (tc_redis_password_file[0] == '\0')
	{
		if (tc_redis_username[0] == '\0')
			return true;
		*errmsg = pstrdup("tenant_cache.redis_username is set but tenant_cache.redis_password_file is not");
		return false;
	}
	if (read_password(password, errmsg) == NULL)
	{
		explicit_bzero(password, sizeof(password));
		return false;
	}

	argv[argc] = "AUTH";
	lens[argc++] = 4;
	if (tc_redis_username[0] != '\0')
	{
		argv[argc] = tc_redis_username;
		lens[argc++] = strlen(tc_redis_username);
	}
	argv[argc] = password;
	lens[argc++] = strlen(password);
	ok = command_argv(argc, argv, lens, &reply, errmsg) == TC_REDIS_OK;
	explicit_bzero(password, sizeof(password));
	if (ok && is_error_reply(reply, "Redis AUTH failed", errmsg))
		ok = false;
	if (reply)
		freeReplyObject(reply);
	return ok;
}

static bool
select_db(char **errmsg)
{
	char		db[16];
	const char *argv[2] = {"SELECT", db};
	size_t		lens[2];
	redisReply *reply = NULL;
	bool		ok;

	if (tc_redis_db == 0)
		return true;
	snprintf(db, sizeof(db), "%d", tc_redis_db);
	lens[0] = 6;
	lens[1] = strlen(db);
	ok = command_argv(2, argv, lens, &reply, errmsg) == TC_REDIS_OK;
	if (ok && is_error_reply(reply, "Redis SELECT failed", errmsg))
		ok = false;
	if (reply)
		freeReplyObject(reply);
	return ok;
}

/*
 * Open a connection to host:port (or to the Unix-domain socket host, when
 * it starts with '/') as conn (which must be free), within the deadline;
 * false with *errmsg (and no connection).
 */
static bool
open_conn(const char *host, int port, TimestampTz deadline, char **errmsg)
{
	int			soerr = 0;
	socklen_t	len = sizeof(soerr);
	const char *where = "";

	Assert(conn == NULL);
	conn = host[0] == '/' ? redisConnectUnixNonBlock(host) :
		redisConnectNonBlock(host, port);
	if (conn == NULL)
	{
		*errmsg = pstrdup("could not allocate Redis connection");
		return false;
	}
	/* Standalone: the messages name no address (the setting does). */
	if (tc_redis_mode != TC_REDIS_STANDALONE)
		where = psprintf(" at %s", tc_redis_endpoint(host, port));
	if (conn->err)
		return io_error(errmsg, psprintf("could not connect to Redis%s", where)), false;
	if (!wait_socket(WL_SOCKET_WRITEABLE, deadline))
		return io_error(errmsg, psprintf("timed out connecting to Redis%s", where)), false;
	if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
		soerr = errno;
	if (soerr != 0)
	{
		*errmsg = psprintf("could not connect to Redis%s: %s", where,
						   strerror(soerr));
		free_ctx(conn);
		conn = NULL;
		return false;
	}
	return true;
}

/* conn becomes node i of the connection (its only one, unless a cluster). */
static void
add_node(const char *host, int port)
{
	RedisNode  *node = &nodes[nnodes++];

	strlcpy(node->addr.host, host, sizeof(node->addr.host));
	node->addr.port = port;
	node->ctx = conn;
}

/* Open, authenticate and select the database, as the next node. */
static bool
connect_server(const char *host, int port, char **errmsg)
{
	if (!open_conn(host, port, deadline_after(tc_connect_timeout_ms), errmsg))
		return false;
	if (!authenticate(errmsg) || !select_db(errmsg))
	{
		tc_redis_disconnect();
		return false;
	}
	add_node(host, port);
	return true;
}

/* The seed list: redis_nodes, or redis_host:redis_port when it is empty. */
static int
seed_nodes(TcRedisAddr *seeds, char **errmsg)
{
	if (tc_redis_nodes[0] == '\0')
	{
		strlcpy(seeds[0].host, tc_redis_host, sizeof(seeds[0].host));
		seeds[0].port = tc_redis_port;
		return 1;
	}
	return tc_parse_redis_nodes(tc_redis_nodes, seeds, TC_MAX_REDIS_NODES, errmsg);
}

/* The sentinel's answer to get-master-addr-by-name; false with *errmsg. */
static bool
parse_master_addr(redisReply *r, const TcRedisAddr *addr, TcRedisAddr *master,
				  char **errmsg)
{
	if (is_error_reply(r, psprintf("sentinel %s:%d refused SENTINEL get-master-addr-by-name",
								   addr->host, addr->port), errmsg))
		return false;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		r->element[0]->type != REDIS_REPLY_STRING ||
		r->element[1]->type != REDIS_REPLY_STRING ||
		r->element[0]->len > TC_MAX_HOST_LEN)
	{
		*errmsg = psprintf("sentinel %s:%d does not know master \"%s\"",
						   addr->host, addr->port, tc_sentinel_master);
		return false;
	}
	memcpy(master->host, r->element[0]->str, r->element[0]->len);
	master->host[r->element[0]->len] = '\0';
	master->port = atoi(r->element[1]->str);
	if (master->port > 0 && master->port <= 65535)
		return true;
	*errmsg = psprintf("sentinel %s:%d answered a bad port", addr->host, addr->port);
	return false;
}

/*
 * Ask the sentinel at addr where the master is; false with *errmsg.  The
 * connection to the sentinel is kept for the next question (the master is
 * checked before every batch: see tc_redis_confirm_master).
 */
static bool
ask_sentinel(const TcRedisAddr *addr, TcRedisAddr *master, char **errmsg)
{
	const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", tc_sentinel_master};
	size_t		lens[3] = {8, 23, strlen(tc_sentinel_master)};
	redisContext *saved = conn;
	redisReply *r = NULL;
	bool		ok = false;

	on_sentinel = true;
	conn = NULL;
	if (sentinel_conn != NULL &&
		(strcmp(sentinel_addr.host, addr->host) != 0 || sentinel_addr.port != addr->port))
	{
		free_ctx(sentinel_conn);
		sentinel_conn = NULL;
	}
	if (sentinel_conn != NULL)
		conn = sentinel_conn;
	else if (open_conn(addr->host, addr->port, deadline_after(tc_connect_timeout_ms), errmsg))
	{
		sentinel_conn = conn;
		sentinel_addr = *addr;
	}
	/* A sentinel answers at once: connect_timeout_ms bounds the question. */
	if (conn != NULL &&
		command_argv_within(3, argv, lens, &r, errmsg, tc_connect_timeout_ms) == TC_REDIS_OK)
	{
		ok = parse_master_addr(r, addr, master, errmsg);
		freeReplyObject(r);
	}
	on_sentinel = false;
	conn = saved;
	return ok;
}

/* Is conn a master?  A sentinel's stale answer names a replica. */
static bool
check_role_master(char **errmsg)
{
	const char *argv[1] = {"ROLE"};
	size_t		lens[1] = {4};
	redisReply *r = NULL;
	bool		ok;

	if (command_argv(1, argv, lens, &r, errmsg) != TC_REDIS_OK)
		return false;
	ok = !is_error_reply(r, "Redis ROLE failed", errmsg);
	if (ok && (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
			   r->element[0]->type != REDIS_REPLY_STRING ||
			   strcmp(r->element[0]->str, "master") != 0))
	{
		*errmsg = pstrdup("the server the sentinels name is not a master (a failover is under way?)");
		ok = false;
	}
	freeReplyObject(r);
	return ok;
}

/*
 * Sentinel mode: ask each sentinel of redis_nodes in turn for the master,
 * connect there and check with ROLE that it is one.
 */
static bool
connect_sentinel(char **errmsg)
{
	TcRedisAddr *sentinels = palloc(sizeof(TcRedisAddr) * TC_MAX_REDIS_NODES);
	TcRedisAddr master;
	int			n;
	char	   *err = NULL;

	tc_redis_disconnect();
	if (tc_sentinel_master[0] == '\0')
	{
		*errmsg = pstrdup("tenant_cache.redis_mode is sentinel but tenant_cache.sentinel_master is not set");
		return false;
	}
	n = seed_nodes(sentinels, errmsg);
	for (int k = 0; k < n; k++)
	{
		int			i = (first_sentinel + k) % n;

		if (!ask_sentinel(&sentinels[i], &master, &err))
			continue;
		first_sentinel = i;
		if (!connect_server(master.host, master.port, &err))
			continue;
		if (!check_role_master(&err))
		{
			tc_redis_disconnect();
			continue;
		}
		return true;
	}
	*errmsg = psprintf("no master \"%s\" found through the sentinels: %s",
					   tc_sentinel_master, err ? err : "no sentinel listed");
	return false;
}


/* ---- Redis Cluster ---- */

/* CRC16-CCITT (XMODEM), as Redis Cluster hashes keys (cluster.c keyHashSlot). */
static uint16
crc16(const char *buf, size_t len)
{
	uint16		crc = 0;

	for (size_t i = 0; i < len; i++)
	{
		crc ^= (uint16) ((unsigned char) buf[i]) << 8;
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16) ((crc << 1) ^ 0x1021) : (uint16) (crc << 1);
	}
	return crc;
}

/*
 * The slot of a key: CRC16 of the key, or of its hash tag (the text between
 * the first "{" and the next "}", when not empty), modulo 16384.
 */
int
tc_redis_key_slot(const char *key, size_t len)
{
	size_t		open,
				close;

	for (open = 0; open < len && key[open] != '{'; open++)
		;
	if (open < len)
	{
		for (close = open + 1; close < len && key[close] != '}'; close++)
			;
		if (close < len && close > open + 1)
			return crc16(key + open + 1, close - open - 1) & (TC_CLUSTER_SLOTS - 1);
	}
	return crc16(key, len) & (TC_CLUSTER_SLOTS - 1);
}

/* Number of nodes commands may go to: a cluster's masters, else 1. */
int
tc_redis_node_count(void)
{
	return Max(nnodes, 1);
}

/* Send the next commands to node i (0 .. tc_redis_node_count() - 1). */
void
tc_redis_select_node(int i)
{
	if (i >= 0 && i < nnodes)
		conn = nodes[i].ctx;
}

/* The node owning a key's slot: the one to send its UNLINK to. */
int
tc_redis_key_node(const char *key, size_t len)
{
	int			owner;

	if (tc_redis_mode != TC_REDIS_CLUSTER || nnodes == 0)
		return 0;
	owner = slot_owner[tc_redis_key_slot(key, len)];
	return owner >= 0 && owner < nnodes ? owner : 0;
}

/* Index of the node at addr, connecting to it first if it is new; -1: failed */
static int
node_at(const TcRedisAddr *addr, char **errmsg)
{
	redisContext *saved = conn;

	for (int i = 0; i < nnodes; i++)
		if (nodes[i].addr.port == addr->port && strcmp(nodes[i].addr.host, addr->host) == 0)
			return i;
	if (nnodes == TC_MAX_REDIS_NODES)
	{
		*errmsg = psprintf("more than %d Redis cluster nodes", TC_MAX_REDIS_NODES);
		return -1;
	}
	conn = NULL;
	if (!connect_server(addr->host, addr->port, errmsg))
		return -1;				/* every connection is closed now */
	conn = saved;
	return nnodes - 1;
}

/* A CLUSTER SLOTS entry's node: [host, port, id, ...]. */
static bool
slots_node_addr(redisReply *n, const TcRedisAddr *seed, TcRedisAddr *addr)
{
	if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
		n->element[0]->type != REDIS_REPLY_STRING ||
		n->element[1]->type != REDIS_REPLY_INTEGER ||
		n->element[0]->len > TC_MAX_HOST_LEN)
		return false;
	/* An empty host: the node does not know its address; use the seed's. */
	if (n->element[0]->len == 0 || strcmp(n->element[0]->str, "?") == 0)
		strlcpy(addr->host, seed->host, sizeof(addr->host));
	else
		strlcpy(addr->host, n->element[0]->str, sizeof(addr->host));
	addr->port = (int) n->element[1]->integer;
	return addr->port > 0 && addr->port <= 65535;
}

/*
 * Read the slot map with CLUSTER SLOTS from the seed conn is connected to:
 * masters[] and slot_owner[].  The number of masters, or -1 with *errmsg.
 */
static int
read_slot_map(const TcRedisAddr *seed, TcRedisAddr *masters, char **errmsg)
{
	const char *argv[2] = {"CLUSTER", "SLOTS"};
	size_t		lens[2] = {7, 5};
	redisReply *r = NULL;
	int			n = 0;

	if (command_argv(2, argv, lens, &r, errmsg) != TC_REDIS_OK)
		return -1;
	if (is_error_reply(r, psprintf("Redis at %s:%d refused CLUSTER SLOTS", seed->host, seed->port), errmsg) ||
		r->type != REDIS_REPLY_ARRAY)
	{
		if (r->type != REDIS_REPLY_ERROR)
			*errmsg = pstrdup("unexpected reply to CLUSTER SLOTS");
		freeReplyObject(r);
		return -1;
	}
	memset(slot_owner, -1, sizeof(slot_owner));
	for (size_t e = 0; e < r->elements; e++)
	{
		redisReply *range = r->element[e];
		TcRedisAddr addr;
		int			idx;

		if (range->type != REDIS_REPLY_ARRAY || range->elements < 3 ||
			range->element[0]->type != REDIS_REPLY_INTEGER ||
			range->element[1]->type != REDIS_REPLY_INTEGER ||
			!slots_node_addr(range->element[2], seed, &addr))
			continue;
		for (idx = 0; idx < n; idx++)
			if (masters[idx].port == addr.port && strcmp(masters[idx].host, addr.host) == 0)
				break;
		if (idx == n)
		{
			if (n == TC_MAX_REDIS_NODES)
				continue;
			masters[n++] = addr;
		}
		for (long long slot = range->element[0]->integer;
			 slot <= range->element[1]->integer && slot < TC_CLUSTER_SLOTS; slot++)
			if (slot >= 0)
				slot_owner[slot] = (int8) idx;
	}
	freeReplyObject(r);
	if (n == 0)
		*errmsg = psprintf("Redis at %s:%d has no slots assigned (is it a cluster node?)",
						   seed->host, seed->port);
	return n > 0 ? n : -1;
}

/*
 * Cluster mode: read the slot map from the first seed of redis_nodes that
 * answers CLUSTER SLOTS, then connect to every master (and authenticate).
 */
static bool
connect_cluster(char **errmsg)
{
	TcRedisAddr *seeds = palloc(sizeof(TcRedisAddr) * TC_MAX_REDIS_NODES);
	TcRedisAddr *masters = palloc(sizeof(TcRedisAddr) * TC_MAX_REDIS_NODES);
	int			nseeds,
				nmasters = -1;
	char	   *err = NULL;

	if (tc_redis_db != 0)
	{
		*errmsg = pstrdup("tenant_cache.redis_db must be 0 in cluster mode (a cluster has database 0 only)");
		return false;
	}
	nseeds = seed_nodes(seeds, errmsg);
	for (int i = 0; i < nseeds && nmasters < 0; i++)
	{
		if (!open_conn(seeds[i].host, seeds[i].port,
					   deadline_after(tc_connect_timeout_ms), &err))
			continue;
		if (authenticate(&err))
			nmasters = read_slot_map(&seeds[i], masters, &err);
		tc_redis_disconnect();
	}
	if (nmasters < 0)
	{
		*errmsg = psprintf("no Redis cluster node of tenant_cache.redis_nodes answered: %s",
						   err ? err : "no node listed");
		return false;
	}
	for (int i = 0; i < nmasters; i++)
	{
		conn = NULL;
		if (!connect_server(masters[i].host, masters[i].port, errmsg))
			return false;
	}
	conn = nodes[0].ctx;
	return true;
}

/*
 * Cluster mode, before each batch: after a MOVED reply (slots were
 * reassigned) read the slot map again from the first master, connecting to
 * masters that are new, so that exact keys go straight to their new owner
 * rather than one MOVED per slot.  False with *errmsg after an I/O error
 * (every connection is closed then).
 */
bool
tc_redis_refresh_slots(char **errmsg)
{
	TcRedisAddr *masters;
	int			map[TC_MAX_REDIS_NODES];
	int			n;

	if (tc_redis_mode != TC_REDIS_CLUSTER || !slots_moved || nnodes == 0)
		return true;
	slots_moved = false;
	masters = palloc(sizeof(TcRedisAddr) * TC_MAX_REDIS_NODES);
	conn = nodes[0].ctx;
	n = read_slot_map(&nodes[0].addr, masters, errmsg);
	if (n < 0)
	{
		if (tc_redis_is_connected())
			tc_redis_disconnect();
		return false;
	}
	for (int i = 0; i < n; i++)
	{
		map[i] = node_at(&masters[i], errmsg);
		if (map[i] < 0)
			return false;
	}
	for (int slot = 0; slot < TC_CLUSTER_SLOTS; slot++)
		if (slot_owner[slot] >= 0)
			slot_owner[slot] = (int8) map[slot_owner[slot]];
	conn = nodes[0].ctx;
	return true;
}

/* The myself line of CLUSTER NODES: "id addr@cport flags master ... slots" */
static bool
myself_line(const char *text, const char **line, size_t *len)
{
	const char *p = text;

	while (*p)
	{
		const char *end = strchr(p, '\n');
		const char *flags;

		if (end == NULL)
			end = p + strlen(p);
		flags = memchr(p, ' ', end - p);
		if (flags != NULL && flags + 1 < end)
			flags = memchr(flags + 1, ' ', end - flags - 1);
		if (flags != NULL && strncmp(flags + 1, "myself", 6) == 0)
		{
			*line = p;
			*len = end - p;
			return true;
		}
		p = *end ? end + 1 : end;
	}
	return false;
}

/* Field k (0-based) of a CLUSTER NODES line, as an offset; -1 if none. */
static int
field_offset(const char *line, size_t len, int k)
{
	size_t		i = 0;

	for (int f = 0; f < k; f++)
	{
		while (i < len && line[i] != ' ')
			i++;
		if (i == len)
			return -1;
		i++;
	}
	return (int) i;
}

/* Does CLUSTER NODES line [line, end) describe a live master with slots? */
static bool
live_master_with_slots(const char *line, const char *end)
{
	int			flags = field_offset(line, end - line, 2);
	int			slots = field_offset(line, end - line, 8);
	size_t		flagslen;

	if (flags < 0 || slots < 0 || slots >= end - line)
		return false;
	flagslen = strcspn(line + flags, " ");
	if (strncmp(line + flags, "master", 6) != 0 &&
		strncmp(line + flags, "myself,master", 13) != 0)
		return false;
	for (size_t i = 0; i + 4 <= flagslen; i++)
		if (strncmp(line + flags + i, "fail", 4) == 0)
			return false;
	return true;
}

/* The live masters with slots in a CLUSTER NODES reply. */
static int
count_masters(const char *text)
{
	int			masters = 0;

	for (const char *p = text; *p;)
	{
		const char *end = strchr(p, '\n');

		if (end == NULL)
			end = p + strlen(p);
		if (live_master_with_slots(p, end))
			masters++;
		p = *end ? end + 1 : end;
	}
	return masters;
}

/*
 * What the node that sent CLUSTER NODES reply r says of itself: its slots
 * are appended to buf; false when it is no master or migrates a slot.
 */
static bool
node_is_stable(redisReply *r, StringInfo buf)
{
	const char *line;
	size_t		len;
	int			flags,
				slots;
	bool		stable = true;

	if (r->type != REDIS_REPLY_STRING || !myself_line(r->str, &line, &len))
		return false;
	flags = field_offset(line, len, 2);
	slots = field_offset(line, len, 8);
	if (flags < 0 || strncmp(line + flags, "myself,master", 13) != 0)
		stable = false;
	if (slots >= 0)
	{
		appendBinaryStringInfo(buf, line + slots, len - slots);
		/* "[slot->-node]" migrating, "[slot-<-node]" importing */
		if (memchr(line + slots, '[', len - slots) != NULL)
			stable = false;
	}
	return stable;
}

/*
 * Cluster mode: what each master says of itself (its slots, migrations
 * under way), as one string to compare before and after a SCAN pass.
 * *stable is false while a slot migrates, when a node is no master any
 * more, or when the first master knows live masters we have no connection
 * to: a SCAN pass may miss keys then.  NULL with *errmsg after an I/O error
 * (every connection is closed then).
 */
char *
tc_redis_cluster_state(bool *stable, char **errmsg)
{
	StringInfoData buf;
	const char *argv[2] = {"CLUSTER", "NODES"};
	size_t		lens[2] = {7, 5};
	redisContext *saved = conn;
	int			n = nnodes;

	*stable = true;
	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
	{
		redisReply *r = NULL;

		conn = nodes[i].ctx;
		if (command_argv(2, argv, lens, &r, errmsg) != TC_REDIS_OK)
			return NULL;
		if (!node_is_stable(r, &buf) ||
			(i == 0 && count_masters(r->str) != n))
			*stable = false;
		appendStringInfoChar(&buf, '|');
		freeReplyObject(r);
	}
	conn = saved;
	return buf.data;
}

/* "MOVED slot host:port" or "ASK slot host:port". */
static bool
parse_redirect(redisReply *r, bool *ask, int *slot, TcRedisAddr *to)
{
	const char *p;
	const char *colon;
	size_t		hostlen;

	if (r->type != REDIS_REPLY_ERROR)
		return false;
	if (strncmp(r->str, "MOVED ", 6) == 0)
		*ask = false, p = r->str + 6;
	else if (strncmp(r->str, "ASK ", 4) == 0)
		*ask = true, p = r->str + 4;
	else
		return false;
	*slot = atoi(p);
	p = strchr(p, ' ');
	if (p == NULL || *slot < 0 || *slot >= TC_CLUSTER_SLOTS)
		return false;
	p++;
	colon = strrchr(p, ':');
	if (colon == NULL)
		return false;
	hostlen = colon - p;
	if (hostlen > TC_MAX_HOST_LEN)
		return false;
	if (hostlen == 0)
	{
		/* The node does not know its address: the one we asked has it. */
		for (int i = 0; i < nnodes; i++)
			if (nodes[i].ctx == conn)
				strlcpy(to->host, nodes[i].addr.host, sizeof(to->host));
	}
	else
	{
		memcpy(to->host, p, hostlen);
		to->host[hostlen] = '\0';
	}
	to->port = atoi(colon + 1);
	return to->port > 0 && to->port <= 65535;
}

/*
 * Cluster mode: the reply to pending command i was a redirection: send the
 * command to the node named (after ASKING for ASK; MOVED also updates the
 * slot map), up to a few hops, and put that node's reply in its place.
 */
static TcRedisStatus
follow_redirects(int i, redisReply **reply, TimestampTz deadline, char **errmsg)
{
	static const char asking[] = "*1\r\n$6\r\nASKING\r\n";

	for (int hop = 0; hop < 5; hop++)
	{
		bool		ask;
		int			slot;
		TcRedisAddr to;
		int			idx;
		redisContext *saved = conn;
		redisReply *r = NULL;
		TcRedisStatus st;

		if (!parse_redirect(*reply, &ask, &slot, &to))
			return TC_REDIS_OK;
		idx = node_at(&to, errmsg);
		if (idx < 0)
			return TC_REDIS_IO_ERROR;
		if (!ask)
		{
			slot_owner[slot] = (int8) idx;
			slots_moved = true;
		}
		conn = nodes[idx].ctx;
		if ((ask && redisAppendFormattedCommand(conn, asking, sizeof(asking) - 1) != REDIS_OK) ||
			redisAppendFormattedCommand(conn, pending_cmds[i], pending_lens[i]) != REDIS_OK)
			return io_error(errmsg, "could not format Redis command");
		st = flush_output(deadline, errmsg);
		if (st == TC_REDIS_OK && ask)
		{
			st = read_reply(&r, deadline, errmsg);
			if (st == TC_REDIS_OK)
				freeReplyObject(r);
		}
		if (st == TC_REDIS_OK)
			st = read_reply(&r, deadline, errmsg);
		if (st != TC_REDIS_OK)
			return st;			/* everything is closed */
		conn = saved;
		freeReplyObject(*reply);
		*reply = r;
	}
	return TC_REDIS_OK;
}

/*
 * Sentinel mode, before each batch: is the master we are connected to still
 * the one the sentinels name?  After a failover the old master may take
 * writes for a while (until the sentinels turn it into a replica), writes
 * that the new master never sees.  False when the sentinels name another
 * master: the connection is closed then, for tc_redis_connect() to find the
 * new one.  True when they confirm it, or when none answers (no news: go on
 * with the current master).
 */
bool
tc_redis_confirm_master(void)
{
	TcRedisAddr *sentinels;
	TcRedisAddr master;
	char	   *err = NULL;
	int			n;

	if (tc_redis_mode != TC_REDIS_SENTINEL || nnodes == 0)
		return true;
	/* No sentinel answered lately: do not wait for them before each batch. */
	if (GetCurrentTimestamp() < sentinels_retry_at)
		return true;
	sentinels = palloc(sizeof(TcRedisAddr) * TC_MAX_REDIS_NODES);
	n = seed_nodes(sentinels, &err);
	for (int k = 0; k < n; k++)
	{
		int			i = (first_sentinel + k) % n;

		if (!ask_sentinel(&sentinels[i], &master, &err))
			continue;
		first_sentinel = i;
		if (strcmp(master.host, nodes[0].addr.host) == 0 &&
			master.port == nodes[0].addr.port)
			return true;
		ereport(LOG,
				(errmsg("tenant_cache: the sentinels name %s:%d as master \"%s\" now; leaving %s:%d",
						master.host, master.port, tc_sentinel_master,
						nodes[0].addr.host, nodes[0].addr.port)));
		tc_redis_disconnect();
		return false;
	}
	sentinels_retry_at = deadline_after(TC_SENTINEL_RETRY_MS);
	return true;
}

/* Connect as tenant_cache.redis_mode says; false with *errmsg. */
bool
tc_redis_connect(char **errmsg)
{
	tc_redis_disconnect();
	switch (tc_redis_mode)
	{
		case TC_REDIS_SENTINEL:
			return connect_sentinel(errmsg);
		case TC_REDIS_CLUSTER:
			return connect_cluster(errmsg);
		default:
			return connect_server(tc_redis_host, tc_redis_port, errmsg);
	}
}

/*
 * Pipelining.  Commands are appended to hiredis' output buffer without any
 * I/O; tc_redis_exchange() then sends them all and reads their replies, in
 * one round trip bounded by command_timeout_ms.
 */
bool
tc_redis_append_argv(int argc, const char **argv, const size_t *lens)
{
	char	   *cmd = NULL;
	int			len;

	if (conn == NULL)
		return false;
	if (tc_redis_mode != TC_REDIS_CLUSTER)
		return redisAppendCommandArgv(conn, argc, argv, lens) == REDIS_OK;
	/* Cluster: keep a copy, to send it elsewhere after MOVED or ASK. */
	len = redisFormatCommandArgv(&cmd, argc, argv, lens);
	if (len < 0)
		return false;
	if (redisAppendFormattedCommand(conn, cmd, len) != REDIS_OK)
	{
		redisFreeCommand(cmd);
		return false;
	}
	if (npending == pending_cap)
	{
		pending_cap = Max(64, 2 * pending_cap);
		pending_cmds = pending_cmds ?
			repalloc(pending_cmds, sizeof(char *) * pending_cap) :
			MemoryContextAlloc(TopMemoryContext, sizeof(char *) * pending_cap);
		pending_lens = pending_lens ?
			repalloc(pending_lens, sizeof(int) * pending_cap) :
			MemoryContextAlloc(TopMemoryContext, sizeof(int) * pending_cap);
	}
	pending_cmds[npending] = cmd;
	pending_lens[npending++] = len;
	return true;
}

/* Append "SCAN cursor [MATCH match] COUNT scan_count"; match may be NULL. */
bool
tc_redis_append_scan(const char *cursor, const char *match, size_t matchlen)
{
	char		count[16];
	const char *argv[6] = {"SCAN", cursor, "COUNT", count, "MATCH", match};
	size_t		lens[6];

	snprintf(count, sizeof(count), "%d", tc_scan_count);
	lens[0] = 4;
	lens[1] = strlen(cursor);
	lens[2] = 5;
	lens[3] = strlen(count);
	lens[4] = 5;
	lens[5] = matchlen;
	return tc_redis_append_argv(match != NULL ? 6 : 4, argv, lens);
}

/*
 * A READONLY error reply: the server was demoted to a replica (a sentinel
 * or cluster failover).  It is no refusal of the command: the caller treats
 * it as a lost connection and reconnects to the new master.
 */
static bool
any_readonly(redisReply **replies, int n)
{
	for (int i = 0; i < n; i++)
		if (replies[i]->type == REDIS_REPLY_ERROR &&
			strncmp(replies[i]->str, "READONLY", 8) == 0)
			return true;
	return false;
}

/*
 * Send what was appended and read n replies into replies[] (the caller
 * frees them with freeReplyObject()).  On an I/O error or timeout the
 * connection is closed, replies already read are freed and every slot is
 * NULL.  Error replies are replies: see tc_redis_error_reply().
 */
TcRedisStatus
tc_redis_exchange(int n, redisReply **replies, char **errmsg)
{
	TimestampTz deadline = deadline_after(tc_command_timeout_ms);
	TcRedisStatus st;
	int			got = 0;

	*errmsg = NULL;
	if (conn == NULL)
	{
		*errmsg = pstrdup("not connected to Redis");
		return TC_REDIS_IO_ERROR;
	}
	st = flush_output(deadline, errmsg);
	while (st == TC_REDIS_OK && got < n)
	{
		replies[got] = NULL;
		st = read_reply(&replies[got], deadline, errmsg);
		if (st == TC_REDIS_OK)
			got++;
	}
	for (int i = 0; st == TC_REDIS_OK && i < n && npending == n; i++)
		st = follow_redirects(i, &replies[i], deadline, errmsg);
	clear_pending();
	if (st == TC_REDIS_OK && any_readonly(replies, n))
		st = io_error(errmsg, "Redis answered READONLY: it is a replica now (failover?)");
	if (st != TC_REDIS_OK)
	{
		for (int i = 0; i < n; i++)
		{
			if (i < got)
				freeReplyObject(replies[i]);
			replies[i] = NULL;
		}
	}
	return st;
}

/* Is reply an error reply?  Then *errmsg says "what: text" (printable). */
bool
tc_redis_error_reply(redisReply *reply, const char *what, char **errmsg)
{
	return is_error_reply(reply, what, errmsg);
}

/* A well-formed SCAN reply: [cursor, [key, ...]], the keys being strings. */
bool
tc_redis_valid_scan_reply(redisReply *r)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		r->element[0]->type != REDIS_REPLY_STRING ||
		r->element[1]->type != REDIS_REPLY_ARRAY)
		return false;
	for (size_t i = 0; i < r->element[1]->elements; i++)
		if (r->element[1]->element[i]->type != REDIS_REPLY_STRING)
			return false;
	return true;
}

/* Close the connection after a reply that makes no sense. */
TcRedisStatus
tc_redis_protocol_error(const char *what, char **errmsg)
{
	return io_error(errmsg, what);
}

/*
 * Generic commands, for the SQL toolbox (toolbox.c), which runs them from a
 * backend on that backend's own short-lived connection, with the same
 * deadlines and latch-aware waits as the worker.
 */

/* An error reply as a message (printable ASCII); false when it is none. */
bool
tc_redis_reply_is_error(redisReply *reply, const char *what, char **errmsg)
{
	return is_error_reply(reply, what, errmsg);
}

/*
 * Run one command and return its reply (the caller frees it).  An error
 * reply is TC_REDIS_ERROR_REPLY with *errmsg naming the command.
 */
TcRedisStatus
tc_redis_command(int argc, const char **argv, const size_t *lens,
				 redisReply **reply, char **errmsg)
{
	TcRedisStatus st;
	char	   *what;

	*reply = NULL;
	*errmsg = NULL;
	if (conn == NULL)
	{
		*errmsg = pstrdup("not connected to Redis");
		return TC_REDIS_IO_ERROR;
	}
	st = command_argv(argc, argv, lens, reply, errmsg);
	if (st != TC_REDIS_OK)
		return st;
	what = psprintf("Redis %s failed", pnstrdup(argv[0], Min(lens[0], 32)));
	if (is_error_reply(*reply, what, errmsg))
	{
		freeReplyObject(*reply);
		*reply = NULL;
		return TC_REDIS_ERROR_REPLY;
	}
	return TC_REDIS_OK;
}

/*
 * Send ncmds commands in one round trip and read their replies into
 * replies[] (the caller frees them), all within one command_timeout_ms.
 * Error replies are returned like any other reply (see
 * tc_redis_reply_is_error); on an I/O error no reply is left.
 */
TcRedisStatus
tc_redis_pipeline(int ncmds, const int *argc, const char **const *argv,
				  const size_t *const *lens, redisReply **replies,
				  char **errmsg)
{
	TimestampTz deadline = deadline_after(tc_command_timeout_ms);
	TcRedisStatus st;

	*errmsg = NULL;
	for (int i = 0; i < ncmds; i++)
		replies[i] = NULL;
	if (conn == NULL)
	{
		*errmsg = pstrdup("not connected to Redis");
		return TC_REDIS_IO_ERROR;
	}
	for (int i = 0; i < ncmds; i++)
		if (redisAppendCommandArgv(conn, argc[i], argv[i], lens[i]) != REDIS_OK)
			return io_error(errmsg, "could not format Redis command");
	st = flush_output(deadline, errmsg);
	for (int i = 0; st == TC_REDIS_OK && i < ncmds; i++)
		st = read_reply(&replies[i], deadline, errmsg);
	if (st != TC_REDIS_OK)
	{
		for (int i = 0; i < ncmds; i++)
		{
			if (replies[i] != NULL)
				freeReplyObject(replies[i]);
			replies[i] = NULL;
		}
	}
	return st;
}
