
# Copyright (c) tenant_cache authors

# Crash in the middle of a drain, and commit order against queue id order.
#  - 300 transactions of 300 tenants committed; the worker (batch_size 10)
#    has applied some batches and is stuck inside the next one on a stalled
#    Redis; a transaction is in flight (BEGIN; INSERT, never committed).  An
#    immediate stop, a restart (crash recovery) and Redis resumed: every
#    committed tenant's keys are gone, the in-flight tenant's keys are still
#    there and its glob never appears in the queue.
#  - A transaction writes its globs to the inbox at PREPARE or just before
#    its commit record, so commits can become visible out of the order in
#    which they wrote: a PREPAREd transaction committed after later ones were
#    applied, also behind a backlog the worker is walking, and a commit held
#    back by synchronous replication while a later one is applied.  The late
#    entry is applied all the same.
#  - The waiting-twin rule (a glob already waiting in the queue is not queued
#    again, the waiting entry stands for it) must neither hold back an earlier
#    commit's invalidation while a later transaction of the same glob stays
#    prepared, nor fail the COMMIT of a REPEATABLE READ writer whose snapshot
#    predates the worker's work on the twin.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# Find TenantCacheTest whatever prove's -I flags are.
use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $max_retry_ms = 1000;
my $n_tenants = 300;
my $inflight_tenant = 999;

my ($faults, $expected, $lost) = (0, 0, 0);

my $redis = TenantCacheTest::Redis->new(name => 'crash');
my $node = tc_node(
	'crash_order',
	redis_port => $redis->port,
	settings => {
		'tenant_cache.poll_interval_ms' => 300,
		'tenant_cache.command_timeout_ms' => 3000,
		'tenant_cache.connect_timeout_ms' => 1000,
		'tenant_cache.max_retry_interval_ms' => $max_retry_ms,
		'tenant_cache.batch_size' => 10,
		# With the filler keys below, each glob takes about a thousand SCAN
		# round trips: the drain of 300 globs lasts long enough to be
		# caught in its middle.
		'tenant_cache.scan_count' => 10,
		'max_prepared_transactions' => 5,
		# Synchronous replication (for a commit that waits after its commit
		# record) needs WAL senders; every session but the one that asks for
		# it commits without waiting.
		'wal_level' => 'replica',
		'max_wal_senders' => 2,
		'synchronous_commit' => 'local',
	});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id serial PRIMARY KEY, tenant_id int, client_id int,
                     bu_id int, name text);
SELECT tenant_cache.register_dependency('People', ARRAY['dash'], 'tenant');
SELECT tenant_cache.watch_table('people', 'People', 'tenant_id', 'client_id', 'bu_id');
INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES (1, 1, 1, 'setup');
});
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'queue drained after the setup: the worker is connected');

sub keys_of
{
	my ($t) = @_;
	return ("tenant:$t:client:1:bu:1:dash:x", "tenant:$t:client:2:bu:5:dash:y");
}
sub glob_of { return "tenant:$_[0]:client:*:bu:*:dash*"; }

sub write_tenant
{
	my ($t) = @_;
	$node->safe_psql('postgres',
		"INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES ($t, 1, 1, 'w')");
	return;
}

my $waiting_on_redis = q{
	SELECT count(*) = 1 FROM pg_stat_activity
	WHERE backend_type = 'tenant_cache worker'
	  AND state = 'active' AND xact_start IS NOT NULL
	  AND wait_event_type = 'Extension'};

subtest 'immediate stop in the middle of a drain, with a transaction in flight' => sub {
	my @committed = map { keys_of($_) } 1 .. $n_tenants;
	my @inflight = keys_of($inflight_tenant);
	my @other = (keys_of(1000), 'session:abc');
	my @filler = map { "filler:$_" } 1 .. 10_000;
	$redis->flushall;
	$redis->set_keys(@committed, @inflight, @other, @filler);

	# 300 transactions, one per tenant, through one session.
	my $t0 = Time::HiRes::time();
	$node->safe_psql('postgres',
		join('', map {
			"INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES ($_, 1, 1, 'c');\n"
		} 1 .. $n_tenants));
	note sprintf('%d transactions committed in %.3f s',
		$n_tenants, Time::HiRes::time() - $t0);

	# Let the worker apply some batches, not all.
	my $count;
	ok( defined wait_until(
			sub { $count = queue_count($node); $count <= $n_tenants - 20 }, 60),
		'the worker is draining');
	cmp_ok($count, '>', 0, 'and is not done');

	my $tx = $node->background_psql('postgres', on_error_stop => 0);
	$tx->query_safe('BEGIN');
	$tx->query_safe(
		"INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES ($inflight_tenant, 1, 1, 'in flight')");

	$redis->pause;
	ok($node->poll_query_until('postgres', $waiting_on_redis),
		'the worker is stuck inside a batch, waiting on the stalled Redis');
	my $queued = queue_count($node);
	my $applied_before = $n_tenants - $queued;
	diag sprintf('at the crash: %d of %d entries applied, %d queued (one batch of them in progress)',
		$applied_before, $n_tenants, $queued);

	$node->stop('immediate');
	$faults++;
	eval { $tx->quit; };
	$node->start;

	# The worker commits with synchronous_commit = off: the removal of
	# entries applied just before the crash may not have reached disk, and
	# those come back (to be applied again); none may be missing.
	my $after = queue_count($node);
	cmp_ok($after, '>=', $queued,
		'after crash recovery every committed entry not yet applied is still queued');
	cmp_ok($after, '<=', $n_tenants, '... and nothing else');
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM people WHERE tenant_id = $inflight_tenant"),
		'0', 'the in-flight transaction was rolled back');
	my $inflight_glob = glob_of($inflight_tenant);
	my $seen_inflight = 0;
	$seen_inflight++ if grep { $_->{glob} eq $inflight_glob } queue_rows($node);

	# Speed the rest of the drain up.
	set_setting($node, 'tenant_cache.scan_count', 1000);
	my $t_resume = Time::HiRes::time();
	$redis->resume;
	my $secs = wait_until(
		sub {
			my @rows = queue_rows($node);
			$seen_inflight++ if grep { $_->{glob} eq $inflight_glob } @rows;
			return @rows == 0 && $redis->count_existing(@committed) == 0;
		},
		60, $t_resume);
	ok(defined $secs, 'every committed tenant\'s keys are gone and the queue is empty');
	diag sprintf('drain finished %.3f s after Redis resumed', $secs // -1);
	my $left = $redis->count_existing(@committed);
	$expected += @committed;
	$lost += $left;
	is($left, 0, 'no key of a committed tenant is left');
	is($seen_inflight, 0, 'the in-flight transaction\'s glob never appeared in the queue');
	is($redis->count_existing(@inflight), scalar(@inflight),
		'the in-flight tenant\'s keys are still there');
	is($redis->count_existing(@other), scalar(@other), 'the other keys are kept');
	$redis->flushall;
};

# Wait until the keys of tenant $t are gone (counted for the summary); with
# $bound, check that it took at most $bound seconds from $since.
sub expect_gone
{
	my ($what, $t, $since, $bound, $since_what) = @_;
	my @k = keys_of($t);
	my $secs = wait_until(sub { $redis->count_existing(@k) == 0 }, 30, $since);
	ok(defined $secs, "$what: the keys of tenant $t are gone");
	diag sprintf('%s: keys of tenant %d gone %.3f s after %s', $what, $t,
		$secs // -1, $since_what // 'the commit');
	cmp_ok($secs // 1e9, '<=', $bound, "$what: within $bound s") if defined $bound;
	$expected += @k;
	$lost += $redis->count_existing(@k);
	return;
}

subtest 'PREPARE TRANSACTION: globs written first, visible after later ones' => sub {
	$redis->set_keys(map { keys_of($_) } 501, 502, 503);
	my $t1 = $node->background_psql('postgres');
	$t1->query_safe('BEGIN');
	$t1->query_safe(
		q{INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES (501, 1, 1, 'T1')});
	$t1->query_safe(q{PREPARE TRANSACTION 't1'});
	$t1->quit;
	is( $node->safe_psql('postgres',
			q{SELECT count(*) FROM tenant_cache.queue WHERE glob LIKE 'tenant:501:%'}),
		'0', 'T1 is only prepared: its entry is not visible in the queue');

	my $t0 = Time::HiRes::time();
	write_tenant(502);
	expect_gone('T2, committed after T1 was prepared', 502, $t0, 2);
	ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'T2 applied: the queue is empty');
	is($redis->count_existing(keys_of(501)), 2, 'T1 is only prepared: its keys stay');

	$t0 = Time::HiRes::time();
	$node->safe_psql('postgres', q{COMMIT PREPARED 't1'});
	expect_gone('T1, COMMIT PREPARED last', 501, $t0, 2);
	ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'the queue is empty');
	is($redis->count_existing(keys_of(503)), 2, 'the keys of another tenant are kept');
};

subtest 'PREPARE TRANSACTION committed while the worker walks a backlog' => sub {
	my @backlog = 601 .. 700;
	$redis->set_keys(map { keys_of($_) } 600, @backlog);
	my $t1 = $node->background_psql('postgres');
	$t1->query_safe('BEGIN');
	$t1->query_safe(
		q{INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES (600, 1, 1, 'T1')});
	$t1->query_safe(q{PREPARE TRANSACTION 't1b'});
	$t1->quit;

	# A backlog of 100 entries with higher ids, 10 batches of the worker.
	$redis->pause;
	$node->safe_psql('postgres',
		join('', map {
			"INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES ($_, 1, 1, 'b');\n"
		} @backlog));
	ok($node->poll_query_until('postgres', $waiting_on_redis),
		'the worker is stuck in the first batch of the backlog');
	my $t0 = Time::HiRes::time();
	$node->safe_psql('postgres', q{COMMIT PREPARED 't1b'});
	$redis->resume;
	$faults++;
	my $secs = wait_until(
		sub {
			queue_count($node) == 0
			  && $redis->count_existing(map { keys_of($_) } @backlog) == 0;
		},
		60, $t0);
	ok(defined $secs, 'the backlog is applied');
	expect_gone('T1 committed behind a backlog', 600, $t0, undef,
		'COMMIT PREPARED (Redis resumed just after)');
	$expected += 2 * @backlog;
	$lost += $redis->count_existing(map { keys_of($_) } @backlog);
};

subtest 'a commit held back by synchronous replication, a later one applied first' => sub {
	$redis->set_keys(map { keys_of($_) } 801, 802);
	set_setting($node, 'synchronous_standby_names', 'tc_nobody');
	# The checkpointer takes the new setting for every backend: give it a
	# moment (a commit that does not wait fails the check below, clearly).
	usleep(500_000);

	my $a = $node->background_psql('postgres');
	$a->query_safe('SET synchronous_commit = on');
	$a->query_safe('BEGIN');
	$a->query_safe(
		q{INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES (801, 1, 1, 'A')});
	my $a_pid = $a->query_safe('SELECT pg_backend_pid()');
	# Send COMMIT without waiting for it to return.
	$a->query_until(qr/committing/, "\\echo committing\nCOMMIT;\n");
	ok( $node->poll_query_until(
			'postgres',
			"SELECT wait_event = 'SyncRep' FROM pg_stat_activity WHERE pid = $a_pid"),
		'A wrote its commit record and waits for a synchronous standby');
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM tenant_cache.queue WHERE glob = '" . glob_of(801) . "'"),
		'0', 'A\'s entry is not visible yet');

	my $t0 = Time::HiRes::time();
	write_tenant(802);
	expect_gone('B, committed while A waits', 802, $t0, 2);
	ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'B applied: the queue is empty');
	is($redis->count_existing(keys_of(801)), 2, 'A is not visible yet: its keys stay');

	$t0 = Time::HiRes::time();
	$node->safe_psql('postgres', 'ALTER SYSTEM RESET synchronous_standby_names');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	$a->query_safe('SELECT 1');
	$a->quit;
	expect_gone('A, visible last', 801, $t0, 2);
	ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'the queue is empty');
};

subtest 'a prepared transaction does not hold back an earlier commit of the same glob' => sub {
	my $t = 901;
	$redis->set_keys(keys_of($t));
	# Redis down: the first commit's entry waits in the queue.
	$redis->stop(save => 1);
	$faults++;
	write_tenant($t);
	is(queue_count($node), 1, 'T0\'s entry waits in the queue');

	# T1 writes the same tenant and stays prepared.
	$node->safe_psql('postgres',
		"BEGIN; INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES ($t, 1, 1, 'T1'); "
		  . "PREPARE TRANSACTION 'tw'");

	my $t0 = Time::HiRes::time();
	$redis->start;
	# T0 committed: once Redis is back its invalidation is due, whatever
	# T1 (not committed) does.
	my $secs = wait_until(sub { $redis->count_existing(keys_of($t)) == 0 },
		$max_retry_ms / 1000 + 10, $t0);
	ok(defined $secs,
		'T0\'s keys are cleared while T1 stays prepared (within max_retry_interval_ms + 10 s)');
	diag sprintf('T0\'s keys gone %.3f s after Redis was back, with T1 prepared',
		$secs // -1);
	unless (defined $secs)
	{
		diag 'queue while T1 is prepared: '
		  . join('; ', map { "id $_->{id} $_->{glob} attempts $_->{attempts}" } queue_rows($node));
		diag 'prepared transactions: '
		  . $node->safe_psql('postgres',
			q{SELECT string_agg(gid, ', ') FROM pg_prepared_xacts});
	}
	$expected += 2;
	$lost += $redis->count_existing(keys_of($t));

	# Once T1 commits, its own invalidation is applied.
	$redis->set_keys(keys_of($t)) if defined $secs;
	$t0 = Time::HiRes::time();
	$node->safe_psql('postgres', q{COMMIT PREPARED 'tw'});
	expect_gone('T1, committed', $t, $t0, 2);
	ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'the queue is empty');
};

# T1 (REPEATABLE READ) takes its snapshot while T0's entry for the same glob
# waits; the worker then works on that entry ($how: 'applied' deletes it
# once Redis is back, 'retried' records a failed attempt on a stalled
# Redis); then T1 writes the same tenant and commits.  Its COMMIT must not
# fail because of what the worker did to the queue meanwhile.
sub rr_writer_after_worker
{
	my ($how, $t) = @_;
	$redis->set_keys(keys_of($t));
	if ($how eq 'applied')
	{
		$redis->stop(save => 1);
	}
	else
	{
		$redis->pause;
	}
	$faults++;
	write_tenant($t);
	my ($row0) = queue_rows($node);
	ok($row0 && $row0->{glob} eq glob_of($t), "$how: T0's entry is queued");

	my $t1 = $node->background_psql('postgres', on_error_stop => 0);
	$t1->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
	is($t1->query_safe('SELECT attempts FROM tenant_cache.queue'), $row0->{attempts},
		"$how: T1's snapshot sees T0's entry waiting");

	if ($how eq 'applied')
	{
		$redis->start;
		ok( defined wait_until(
				sub { queue_count($node) == 0 && $redis->count_existing(keys_of($t)) == 0 },
				$max_retry_ms / 1000 + 10),
			"$how: the worker applied T0's entry");
		$expected += 2;
		$lost += $redis->count_existing(keys_of($t));
		$redis->set_keys(keys_of($t));
	}
	else
	{
		ok( defined wait_until(
				sub {
					my ($r) = queue_rows($node);
					return $r && $r->{attempts} > $row0->{attempts};
				},
				30),
			"$how: the worker recorded a failed attempt on T0's entry");
	}

	$t1->query_safe(
		"INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES ($t, 1, 1, 'T1')");
	my $t0 = Time::HiRes::time();
	my ($out, $failed) = $t1->query('COMMIT');
	my $err = $t1->{stderr};
	$t1->quit;
	ok(!$failed, "$how: T1's COMMIT succeeds") or diag "COMMIT failed: $err";
	if ($how eq 'retried')
	{
		$t0 = Time::HiRes::time();
		$redis->resume;
	}
	if (!$failed)
	{
		expect_gone("$how: T1, REPEATABLE READ", $t, $t0,
			$how eq 'retried' ? $max_retry_ms / 1000 + 5 : 2,
			$how eq 'retried' ? 'Redis resumed' : 'the commit');
	}
	else
	{
		is( $node->safe_psql('postgres',
				"SELECT count(*) FROM people WHERE tenant_id = $t AND name = 'T1'"),
			'0', "$how: the failed COMMIT rolled T1 back");
		# After a stall T0's entry is still due: it must be applied.
		expect_gone("$how: T0, after the stall", $t, $t0, $max_retry_ms / 1000 + 5,
			'Redis resumed')
		  if $how eq 'retried';
	}
	ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM tenant_cache.queue'),
		"$how: the queue is empty");
	return;
}

subtest 'a REPEATABLE READ writer commits after the worker applied the glob\'s twin' => sub {
	rr_writer_after_worker('applied', 950);
};

subtest 'a REPEATABLE READ writer commits after the worker retried the glob\'s twin' => sub {
	rr_writer_after_worker('retried', 960);
};

is(queue_count($node), '0', 'the queue is empty at the end');
fault_summary($faults, $expected, $lost);

$node->stop;
$redis->stop;
done_testing();
