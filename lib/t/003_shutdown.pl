
# Copyright (c) tenant_cache authors

# A stalled Redis (SIGSTOP: connections open, nothing answered) and the
# worker's life cycle: commits do not wait for it, a Redis command gives up
# after command_timeout_ms and is retried, the outage does not put a WARNING
# in the log at every retry, a fast shutdown does not wait for the command,
# the queue survives the shutdown, and a terminated worker is restarted.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# Find TenantCacheTest whatever prove's -I flags are (PGXS resets
# PROVE_FLAGS in Makefile.global after the Makefile sets it).
use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $cmd_timeout_ms = 2000;
my $max_retry_ms = 1000;

my $redis = TenantCacheTest::Redis->new;
my $node = tc_node(
	'shutdown',
	redis_port => $redis->port,
	settings => {
		'tenant_cache.poll_interval_ms' => 300,
		'tenant_cache.command_timeout_ms' => $cmd_timeout_ms,
		'tenant_cache.connect_timeout_ms' => 1000,
		'tenant_cache.max_retry_interval_ms' => $max_retry_ms,
	});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id int PRIMARY KEY, tenant_id int, client_id int,
                     bu_id int, name text);
SELECT tenant_cache.register_dependency('People', ARRAY['dropdown:people'], 'tenant');
SELECT tenant_cache.watch_table('people', 'People', 'tenant_id', 'client_id', 'bu_id');
INSERT INTO people VALUES (1, 1, 2, 3, 'ann'), (2, 2, 2, 3, 'bob'),
                          (3, 3, 2, 3, 'cat');
});
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'queue drained after the setup: the worker is connected');

# The worker is inside a Redis command: busy in a transaction (a batch),
# waiting on the socket.
my $waiting_on_redis = q{
	SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'tenant_cache worker'
	  AND state = 'active' AND xact_start IS NOT NULL
	  AND wait_event_type = 'Extension'};

my @other = qw(tenant:3:client:2:bu:3:dropdown:people:all session:abc);

subtest 'a stalled Redis: commits go on, the command times out and is retried' => sub {
	my $key = 'tenant:1:client:2:bu:3:dropdown:people:all';
	$redis->flushall;
	$redis->set_keys($key, @other);
	$redis->pause;
	my $offset = -s $node->logfile;

	my $s = $node->background_psql('postgres');
	$s->query_safe('BEGIN');
	$s->query_safe(q{UPDATE people SET name = 'ann2' WHERE tenant_id = 1});
	my $t_commit = Time::HiRes::time();
	my $commit_secs = psql_timed($s, 'COMMIT');
	$s->quit;
	note sprintf('COMMIT with Redis stalled took %.1f ms', $commit_secs * 1000);
	cmp_ok($commit_secs, '<', 2, 'the COMMIT does not wait for Redis');

	ok($node->poll_query_until('postgres', $waiting_on_redis),
		'the worker waits on Redis');

	my $row;
	my $secs = wait_until(
		sub {
			($row) = grep { defined $_->{last_error} } queue_rows($node);
			return defined $row;
		},
		60, $t_commit);
	ok(defined $secs, 'the command gives up: the failure is in the queue');
	like($row->{last_error} // '', qr/timed out/, 'last_error says it timed out');
	note sprintf('command failed %.3f s after the commit (command_timeout_ms = %d): %s',
		$secs // -1, $cmd_timeout_ms, $row->{last_error} // '');
	cmp_ok($secs // 0, '>=', $cmd_timeout_ms / 1000 * 0.9,
		'the command was given command_timeout_ms');

	# Stay stalled for three attempts in all.
	my $retried = wait_until(
		sub { (grep { $_->{attempts} >= 3 } queue_rows($node)) > 0 }, 60);
	ok(defined $retried, 'the invalidation is retried (attempts reaches 3)');
	my @log = slurp_file($node->logfile, $offset)
	  =~ /^.*tenant_cache worker.*Redis.*$/mg;
	note "worker log lines during the stall:\n" . join("\n", @log);
	my @warnings = grep { /WARNING:/ } @log;
	cmp_ok(scalar(@warnings), '>=', 1, 'the stall is reported with a WARNING');
	cmp_ok(scalar(@warnings), '<=', 2,
		'3 failed attempts, at most 2 WARNINGs (not one per retry)');

	my $t_resume = Time::HiRes::time();
	$redis->resume;
	my $latency = wait_until(sub { !$redis->exists($key) }, 60, $t_resume);
	ok(defined $latency, 'once Redis answers again the key is cleared');
	note sprintf('key gone %.3f s after Redis resumed', $latency // -1);
	cmp_ok($latency // 1e9, '<=', ($max_retry_ms + $cmd_timeout_ms) / 1000 + 2,
		'within max_retry_interval_ms + command_timeout_ms + 2 s');
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'queue drained');
	is_deeply([ $redis->keys ], [ sort @other ], 'the other keys are kept');
};

subtest 'fast shutdown does not wait for a stalled Redis command' => sub {
	my $key = 'tenant:2:client:2:bu:3:dropdown:people:all';
	$redis->flushall;
	$redis->set_keys($key, @other);
	# Start from a connected, idle worker.
	ok($node->poll_query_until('postgres',
			q{SELECT count(*) = 1 FROM pg_stat_activity
			  WHERE backend_type = 'tenant_cache worker' AND state = 'idle'}),
		'the worker is idle');
	$redis->pause;
	my $offset = -s $node->logfile;

	my $t_commit = Time::HiRes::time();
	$node->safe_psql('postgres',
		q{UPDATE people SET name = 'bob2' WHERE tenant_id = 2});
	ok($node->poll_query_until('postgres', $waiting_on_redis),
		'the worker waits on Redis');

	my $t0 = Time::HiRes::time();
	$node->stop('fast');
	my $t1 = Time::HiRes::time();
	my $stop_secs = $t1 - $t0;
	diag sprintf(
		'pg_ctl stop -m fast with the worker inside a stalled Redis command: %.3f s '
		  . '(command_timeout_ms = %d)',
		$stop_secs, $cmd_timeout_ms);
	cmp_ok($stop_secs, '<', $cmd_timeout_ms / 1000 + 2,
		'fast shutdown finishes within command_timeout_ms + 2 s');
	# The command started after $t_commit: had the worker sat it out, the
	# stop could not have ended before $t_commit + command_timeout_ms.
	cmp_ok($t1 - $t_commit, '<', $cmd_timeout_ms / 1000,
		'the worker left the Redis command without waiting for its timeout');
	ok($node->log_contains(
			qr/terminating background worker "tenant_cache worker" due to administrator command/,
			$offset),
		'the worker was terminated by the shutdown');

	$redis->resume;
	ok($redis->exists($key), 'the key is still in Redis after the shutdown');

	$node->start;
	my $latency = wait_until(sub { !$redis->exists($key) }, 60);
	ok(defined $latency, 'after a restart the queued invalidation is applied');
	note sprintf('key gone %.3f s after the server was started again',
		$latency // -1);
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'queue drained');
	is_deeply([ $redis->keys ], [ sort @other ], 'the other keys are kept');
};

subtest 'a terminated worker is restarted and keeps working' => sub {
	my $old = worker_pid($node);
	like($old, qr/^\d+$/, 'a worker runs');
	is($node->safe_psql('postgres', "SELECT pg_terminate_backend($old)"),
		't', 'pg_terminate_backend() on the worker');

	my $new;
	my $secs = wait_until(
		sub {
			$new = worker_pid($node);
			return $new =~ /^\d+$/ && $new ne $old;
		},
		30);
	ok(defined $secs, 'a new worker process appears');
	diag sprintf('new worker pid %s %.3f s after pg_terminate_backend()',
		$new // '?', $secs // -1);
	cmp_ok($secs // 1e9, '<=', 10, 'within 10 s (bgw_restart_time is 1 s)');
	# The old connection closed with its process: one client is the new
	# worker.
	ok(defined wait_until(sub { $redis->clients == 1 }, 30),
		'the new worker is connected to Redis');

	my $key = 'tenant:3:client:2:bu:3:dropdown:people:all';
	$redis->flushall;
	$redis->set_keys($key, 'session:abc');
	my $t0 = Time::HiRes::time();
	$node->safe_psql('postgres',
		q{UPDATE people SET name = 'cat2' WHERE tenant_id = 3});
	my $latency = wait_until(sub { !$redis->exists($key) }, 60, $t0);
	ok(defined $latency && $latency <= 1.0,
		'the new worker clears keys within a second of the commit');
	note sprintf('new worker: key gone %.1f ms after the write was started',
		($latency // -1) * 1000);
	is_deeply([ $redis->keys ], ['session:abc'], 'the other key is kept');
	is(queue_count($node), '0', 'queue empty');
};

$node->stop;
$redis->stop;
done_testing();
