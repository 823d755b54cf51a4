
# Copyright (c) tenant_cache authors

# End to end: writes on watched tables (INSERT, UPDATE, UPDATE moving a row
# to another tenant, DELETE, TRUNCATE, COPY, a partitioned table),
# invalidate_pattern() and invalidate_model() clear exactly the Redis keys of
# the rows' tenant/client/bu within a second of COMMIT, and nothing else; a
# rolled-back write clears nothing.
#
# The worker's fallback poll is set to 5 s: latencies far below a second,
# write after write, come from the wake-up at commit, not from the poll.

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

# The contract: keys are gone this soon after COMMIT.
my $max_latency = 1.0;
# How long to keep polling for keys to go, so that a miss is reported with
# its real latency (or as never) rather than as a bare failure.
my $deadline = 15;
my $poll_interval_ms = 5000;

my $redis = TenantCacheTest::Redis->new;
my $node = tc_node(
	'invalidation',
	redis_port => $redis->port,
	settings => { 'tenant_cache.poll_interval_ms' => $poll_interval_ms });

# The worker runs from the start, before the extension exists.
ok( $node->poll_query_until(
		'postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity "
		  . "WHERE backend_type = 'tenant_cache worker' AND datname = 'postgres'"
	),
	'one tenant_cache worker runs in database postgres');

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;

CREATE TABLE people (id int PRIMARY KEY, tenant_id int, client_id int,
                     bu_id int, name text);
CREATE TABLE asset (id int PRIMARY KEY, tenant_id int, client_id int,
                    bu_id int, status text);
CREATE TABLE feature_flag (id int PRIMARY KEY, tenant_id int, flag text);
CREATE TABLE peopleeventlog (id int, tenant_id int NOT NULL, client_id int,
                             bu_id int, event text)
    PARTITION BY LIST (tenant_id);
CREATE TABLE peopleeventlog_t1 PARTITION OF peopleeventlog FOR VALUES IN (1);
CREATE TABLE peopleeventlog_t2 PARTITION OF peopleeventlog FOR VALUES IN (2);

SELECT tenant_cache.register_dependency('People',
    ARRAY['dropdown:people', 'dashboard:metrics'], 'tenant');
SELECT tenant_cache.register_dependency('Asset',
    ARRAY['dropdown:asset', 'asset:status'], 'bu');
SELECT tenant_cache.register_dependency('FeatureFlag',
    ARRAY['config:features'], 'global');
SELECT tenant_cache.register_dependency('PeopleEventLog',
    ARRAY['eventlog:people'], 'client');

SELECT tenant_cache.watch_table('people', 'People', 'tenant_id', 'client_id', 'bu_id');
SELECT tenant_cache.watch_table('asset', 'Asset', 'tenant_id', 'client_id', 'bu_id');
SELECT tenant_cache.watch_table('feature_flag', 'FeatureFlag');
SELECT tenant_cache.watch_table('peopleeventlog', 'PeopleEventLog',
                                'tenant_id', 'client_id', 'bu_id');

INSERT INTO people VALUES (1, 1, 2, 3, 'ann'), (2, 2, 2, 3, 'bob'),
                          (3, 1, 5, 6, 'cid');
INSERT INTO asset VALUES (1, 1, 2, 3, 'up'), (2, 1, 2, 4, 'up'),
                         (3, 2, 2, 3, 'up');
INSERT INTO feature_flag VALUES (1, 1, 'beta');
INSERT INTO peopleeventlog VALUES (1, 1, 5, 3, 'login'), (2, 2, 2, 3, 'login');
});

# The setup wrote rows, so the worker has had globs to apply: wait for them.
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'the queue is drained after the setup');
$node->wait_for_log(qr/tenant_cache worker connected to Redis at 127\.0\.0\.1:/);

# Every key of the cache; each test seeds all of them and names the ones its
# write must clear.
my @all_keys = qw(
  tenant:1:client:2:bu:3:dropdown:people:all
  tenant:1:client:5:bu:6:dropdown:people:all
  tenant:1:client:2:bu:3:dashboard:metrics:today
  tenant:2:client:2:bu:3:dropdown:people:all
  tenant:2:client:2:bu:3:dashboard:metrics:today
  tenant:10:client:2:bu:3:dropdown:people:all
  tenant:1:client:2:bu:3:dropdown:asset:all
  tenant:1:client:2:bu:4:dropdown:asset:all
  tenant:1:client:2:bu:3:asset:status:42
  tenant:1:client:2:bu:4:asset:status:42
  tenant:2:client:2:bu:3:dropdown:asset:all
  tenant:1:client:2:bu:3:config:features
  tenant:2:client:7:bu:8:config:features
  tenant:1:client:5:bu:3:eventlog:people:recent
  tenant:1:client:2:bu:3:eventlog:people:recent
  tenant:2:client:2:bu:3:eventlog:people:recent
  tenant:2:client:5:bu:3:eventlog:people:recent
  :1:tenant:1:client:2:bu:3:dropdown:people:all
  session:abc
  other:tenant:1:x
);

my @latencies;

# Seed every key, run $sql in one session (the last statement being the
# COMMIT or the only autocommitted statement), then check that exactly
# @$gone disappear, within $max_latency of the COMMIT, and every other key
# stays.  $keys defaults to @all_keys.
sub check_invalidation
{
	my ($name, $sql, $gone, $keys, $session) = @_;
	my $own_session = !defined $session;
	my @keys = @{ $keys // \@all_keys };
	my %gone = map { $_ => 1 } @$gone;

	$redis->flushall;
	$redis->set_keys(@keys);
	is(join(' ', $redis->keys), join(' ', sort @keys), "$name: keys seeded");

	$session //= $node->background_psql('postgres');
	my @stmts = ref $sql ? @$sql : ($sql);
	my $last = pop @stmts;
	$session->query_safe($_) foreach @stmts;
	my $t0 = Time::HiRes::time();
	$session->query_safe($last);
	my $commit_secs = Time::HiRes::time() - $t0;
	$session->quit if $own_session;

	my $latency = wait_until(sub { $redis->count_existing(@$gone) == 0 },
		$deadline, $t0);
	ok(defined $latency, "$name: the keys of the write are cleared");
	if (defined $latency)
	{
		push @latencies, $latency;
		note sprintf("%s: COMMIT took %.1f ms; keys gone %.1f ms after it was sent",
			$name, $commit_secs * 1000, $latency * 1000);
		cmp_ok($latency, '<=', $max_latency,
			"$name: cleared within $max_latency s of the commit");
	}

	# Once the queue is empty the worker has applied every glob of the
	# commit: only then is the key set final.
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		"$name: queue drained");
	is_deeply([ $redis->keys ], [ sort grep { !$gone{$_} } @keys ],
		"$name: every other key is still there");
}

subtest 'INSERT clears the patterns of the new row\'s tenant' => sub {
	check_invalidation(
		'INSERT',
		q{INSERT INTO people VALUES (10, 1, 9, 9, 'dan')},
		[
			qw(tenant:1:client:2:bu:3:dropdown:people:all
			  tenant:1:client:5:bu:6:dropdown:people:all
			  tenant:1:client:2:bu:3:dashboard:metrics:today)
		]);
};

subtest 'UPDATE within a tenant clears that tenant only' => sub {
	check_invalidation(
		'UPDATE',
		[ 'BEGIN', q{UPDATE people SET name = 'bobby' WHERE id = 2}, 'COMMIT' ],
		[
			qw(tenant:2:client:2:bu:3:dropdown:people:all
			  tenant:2:client:2:bu:3:dashboard:metrics:today)
		]);
};

subtest 'UPDATE moving a row to another tenant clears both tenants' => sub {
	check_invalidation(
		'UPDATE tenant 1 -> 2',
		q{UPDATE people SET tenant_id = 2 WHERE id = 3},
		[
			qw(tenant:1:client:2:bu:3:dropdown:people:all
			  tenant:1:client:5:bu:6:dropdown:people:all
			  tenant:1:client:2:bu:3:dashboard:metrics:today
			  tenant:2:client:2:bu:3:dropdown:people:all
			  tenant:2:client:2:bu:3:dashboard:metrics:today)
		]);
};

subtest 'DELETE with bu scope clears that bu only' => sub {
	check_invalidation(
		'DELETE',
		q{DELETE FROM asset WHERE id = 2},
		[
			qw(tenant:1:client:2:bu:4:dropdown:asset:all
			  tenant:1:client:2:bu:4:asset:status:42)
		]);
};

subtest 'COPY FROM STDIN clears the tenants/bus of the copied rows' => sub {
	my @gone = qw(tenant:1:client:2:bu:3:dropdown:asset:all
	  tenant:1:client:2:bu:3:asset:status:42
	  tenant:2:client:2:bu:3:dropdown:asset:all);
	my %gone = map { $_ => 1 } @gone;
	$redis->flushall;
	$redis->set_keys(@all_keys);
	my $t0 = Time::HiRes::time();
	$node->safe_psql('postgres',
		"COPY asset FROM STDIN;\n10\t1\t2\t3\tnew\n11\t2\t2\t3\tnew\n\\.\n");
	my $latency = wait_until(sub { $redis->count_existing(@gone) == 0 },
		$deadline, $t0);
	ok(defined $latency, 'COPY: the keys of the copied rows are cleared');
	if (defined $latency)
	{
		push @latencies, $latency;
		note sprintf("COPY: keys gone %.1f ms after psql was started",
			$latency * 1000);
		cmp_ok($latency, '<=', $max_latency,
			"COPY: cleared within $max_latency s (measured from psql start)");
	}
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'COPY: queue drained');
	is_deeply([ $redis->keys ], [ sort grep { !$gone{$_} } @all_keys ],
		'COPY: every other key is still there');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM asset WHERE id IN (10, 11)'),
		'2', 'COPY: the rows were copied');
};

subtest 'TRUNCATE clears the patterns of every tenant' => sub {
	check_invalidation(
		'TRUNCATE',
		q{TRUNCATE people},
		[
			qw(tenant:1:client:2:bu:3:dropdown:people:all
			  tenant:1:client:5:bu:6:dropdown:people:all
			  tenant:1:client:2:bu:3:dashboard:metrics:today
			  tenant:2:client:2:bu:3:dropdown:people:all
			  tenant:2:client:2:bu:3:dashboard:metrics:today
			  tenant:10:client:2:bu:3:dropdown:people:all)
		]);
	$node->safe_psql('postgres',
		q{INSERT INTO people VALUES (1, 1, 2, 3, 'ann'), (2, 2, 2, 3, 'bob')});
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'people rows inserted again');
};

subtest 'global scope clears the pattern of every tenant' => sub {
	check_invalidation(
		'global UPDATE',
		q{UPDATE feature_flag SET flag = 'ga' WHERE id = 1},
		[
			qw(tenant:1:client:2:bu:3:config:features
			  tenant:2:client:7:bu:8:config:features)
		]);
};

subtest 'INSERT through a partitioned parent (client scope)' => sub {
	check_invalidation(
		'partitioned INSERT',
		q{INSERT INTO peopleeventlog VALUES (3, 2, 2, 9, 'logout')},
		[qw(tenant:2:client:2:bu:3:eventlog:people:recent)]);
};

subtest 'UPDATE moving a row to another partition clears both tenants' => sub {
	check_invalidation(
		'partition move',
		q{UPDATE peopleeventlog SET tenant_id = 2 WHERE id = 1},
		[
			qw(tenant:1:client:5:bu:3:eventlog:people:recent
			  tenant:2:client:5:bu:3:eventlog:people:recent)
		]);
	is( $node->safe_psql('postgres',
			'SELECT tableoid::regclass FROM peopleeventlog WHERE id = 1'),
		'peopleeventlog_t2',
		'the row moved to the partition of tenant 2');
};

subtest 'a partition created after watch_table() is watched too' => sub {
	$node->safe_psql('postgres',
		'CREATE TABLE peopleeventlog_t3 PARTITION OF peopleeventlog FOR VALUES IN (3)'
	);
	my @keys = (@all_keys, 'tenant:3:client:2:bu:3:eventlog:people:recent');
	check_invalidation(
		'INSERT into a new partition',
		q{INSERT INTO peopleeventlog VALUES (30, 3, 2, 3, 'login')},
		[qw(tenant:3:client:2:bu:3:eventlog:people:recent)], \@keys);
	check_invalidation(
		'TRUNCATE of a new partition',
		q{TRUNCATE peopleeventlog_t3},
		[
			qw(tenant:1:client:5:bu:3:eventlog:people:recent
			  tenant:1:client:2:bu:3:eventlog:people:recent
			  tenant:2:client:2:bu:3:eventlog:people:recent
			  tenant:2:client:5:bu:3:eventlog:people:recent
			  tenant:3:client:2:bu:3:eventlog:people:recent)
		],
		\@keys);
};

subtest 'invalidate_pattern() clears one pattern of one tenant and client' => sub {
	check_invalidation(
		'invalidate_pattern',
		q{SELECT tenant_cache.invalidate_pattern('dropdown:asset', '1', '2', NULL)},
		[
			qw(tenant:1:client:2:bu:3:dropdown:asset:all
			  tenant:1:client:2:bu:4:dropdown:asset:all)
		]);
};

subtest 'invalidate_model() clears every pattern of the model for a tenant' => sub {
	check_invalidation(
		'invalidate_model',
		q{SELECT tenant_cache.invalidate_model('People', '2')},
		[
			qw(tenant:2:client:2:bu:3:dropdown:people:all
			  tenant:2:client:2:bu:3:dashboard:metrics:today)
		]);
};

subtest 'a rolled-back savepoint clears nothing, the rest commits' => sub {
	check_invalidation(
		'savepoint',
		[
			'BEGIN',
			'SAVEPOINT s1',
			q{UPDATE people SET name = 'x' WHERE tenant_id = 2},
			'ROLLBACK TO SAVEPOINT s1',
			q{UPDATE asset SET status = 'down' WHERE id = 3},
			'COMMIT'
		],
		[qw(tenant:2:client:2:bu:3:dropdown:asset:all)]);
};

subtest 'nothing is cleared before COMMIT, nor after ROLLBACK' => sub {
	my @gone = qw(tenant:1:client:2:bu:3:dropdown:asset:all
	  tenant:1:client:2:bu:3:asset:status:42);
	$redis->flushall;
	$redis->set_keys(@all_keys);

	# Open transaction: the write is not visible, so neither may the
	# invalidation be.
	my $writer = $node->background_psql('postgres');
	$writer->query_safe('BEGIN');
	$writer->query_safe(q{UPDATE asset SET status = 'busy' WHERE id = 1});
	usleep(1_000_000);
	is(queue_count($node), '0', 'open transaction: nothing in the queue');
	is_deeply([ $redis->keys ], [ sort @all_keys ],
		'open transaction: no key cleared');

	$writer->query_safe('ROLLBACK');
	is(queue_count($node), '0', 'rollback: nothing in the queue');
	# Let the worker pass at least one fallback poll.
	usleep(($poll_interval_ms + 500) * 1000);
	is(queue_count($node), '0', 'rollback: still nothing in the queue');
	is_deeply([ $redis->keys ], [ sort @all_keys ], 'rollback: no key cleared');

	# The same session's next write is applied as usual.
	my $t0 = Time::HiRes::time();
	$writer->query_safe(q{UPDATE asset SET status = 'busy' WHERE id = 1});
	my $latency = wait_until(sub { $redis->count_existing(@gone) == 0 },
		$deadline, $t0);
	ok(defined $latency && $latency <= $max_latency,
		'the same write, committed, is cleared within a second');
	note sprintf('write after rollback: keys gone after %.1f ms',
		($latency // -1) * 1000);
	$writer->quit;
};

# A session sees a reload at its next statement.
sub session_sees
{
	my ($session, $fmt) = @_;
	return defined wait_until(
		sub { $session->query_safe('SHOW tenant_cache.key_format') eq $fmt },
		$deadline);
}

subtest 'django-redis style key_format with a version prefix' => sub {
	my $fmt = ':1:tenant:{tenant}:client:{client}:bu:{bu}:{pattern}';
	my $default = 'tenant:{tenant}:client:{client}:bu:{bu}:{pattern}';

	# A backend keeps the globs of a tenant's rows from one transaction to
	# the next: this one wrote tenant 1 before the change, and must build
	# them again with the new format.
	my $old = $node->background_psql('postgres');
	$old->query_safe(q{UPDATE people SET name = 'before' WHERE tenant_id = 1});
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'the write before the change is applied');

	$node->safe_psql('postgres',
		"ALTER SYSTEM SET tenant_cache.key_format = '$fmt'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok( $node->poll_query_until(
			'postgres', 'SHOW tenant_cache.key_format', $fmt),
		'new sessions use the new key_format');
	check_invalidation(
		'django key_format',
		q{UPDATE people SET name = 'zed' WHERE tenant_id = 1},
		[qw(:1:tenant:1:client:2:bu:3:dropdown:people:all)]);
	ok(session_sees($old, $fmt), 'the older session sees the new key_format');
	check_invalidation(
		'django key_format, from a session that wrote the tenant before',
		q{UPDATE people SET name = 'zed 2' WHERE tenant_id = 1},
		[qw(:1:tenant:1:client:2:bu:3:dropdown:people:all)], undef, $old);

	$node->safe_psql('postgres', 'ALTER SYSTEM RESET tenant_cache.key_format');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	ok( $node->poll_query_until(
			'postgres', 'SHOW tenant_cache.key_format', $default),
		'key_format reset');
	my @default_gone = qw(tenant:1:client:2:bu:3:dropdown:people:all
	  tenant:1:client:5:bu:6:dropdown:people:all
	  tenant:1:client:2:bu:3:dashboard:metrics:today);
	check_invalidation(
		'default key_format again',
		q{UPDATE people SET name = 'zoe' WHERE tenant_id = 1},
		\@default_gone);
	ok(session_sees($old, $default), 'the older session sees the reset');
	check_invalidation(
		'default key_format again, from the older session',
		q{UPDATE people SET name = 'zoe 2' WHERE tenant_id = 1},
		\@default_gone, undef, $old);
	$old->quit;
};

subtest 'unwatch_table() stops the invalidations of that table' => sub {
	$node->safe_psql('postgres', q{SELECT tenant_cache.unwatch_table('asset')});
	# The watched write of the same transaction shows when its commit has
	# been applied.
	check_invalidation(
		'after unwatch_table',
		[
			'BEGIN',
			q{UPDATE asset SET status = 'gone' WHERE tenant_id = 1},
			q{UPDATE people SET name = 'x2' WHERE tenant_id = 2},
			'COMMIT'
		],
		[
			qw(tenant:2:client:2:bu:3:dropdown:people:all
			  tenant:2:client:2:bu:3:dashboard:metrics:today)
		]);
};

# Many keys of one pattern: SCAN pages through all of them.
subtest 'a pattern with more keys than one SCAN page' => sub {
	my @many = map { "tenant:2:client:$_:bu:1:dropdown:people:p" } 1 .. 5000;
	my @keep = map { "tenant:3:client:$_:bu:1:dropdown:people:p" } 1 .. 500;
	check_invalidation(
		'5000 keys',
		q{SELECT tenant_cache.invalidate_model('People', '2')},
		\@many, [ @many, @keep ]);
};

is(queue_count($node), '0', 'the queue is empty at the end');
is( $node->safe_psql(
		'postgres',
		"SELECT backend_type FROM pg_stat_activity WHERE backend_type = 'tenant_cache worker'"
	),
	'tenant_cache worker',
	'the worker is still running');

@latencies = sort { $a <=> $b } @latencies;
diag sprintf(
	'commit-to-keys-gone latency over %d writes: min %.1f ms, median %.1f ms, max %.1f ms',
	scalar(@latencies),
	$latencies[0] * 1000,
	$latencies[ int(@latencies / 2) ] * 1000,
	$latencies[-1] * 1000) if @latencies;

$node->stop;
done_testing();
