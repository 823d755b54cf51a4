
# Copyright (c) tenant_cache authors

# Streaming replication and failover.  The primary and its standby both
# preload tenant_cache with the same settings:
#  - the standby runs no tenant_cache worker (it starts only once recovery
#    has finished), however long it stays a standby;
#  - while Redis is down, invalidations pile up in the primary's queue and
#    replicate with the rest of the WAL;
#  - the primary crashes (immediate stop), the standby is promoted: it
#    starts a worker which, once Redis is back, drains the replicated queue
#    and clears exactly the keys of the writes made on the old primary; new
#    writes on the promoted node are applied too.

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
my ($faults, $expected, $lost) = (0, 0, 0);

my $redis = TenantCacheTest::Redis->new(name => 'standby');
my %tc_settings = (
	'shared_preload_libraries' => 'tenant_cache',
	'tenant_cache.redis_host' => '127.0.0.1',
	'tenant_cache.redis_port' => $redis->port,
	'tenant_cache.poll_interval_ms' => 300,
	'tenant_cache.max_retry_interval_ms' => $max_retry_ms,
	'tenant_cache.connect_timeout_ms' => 1000,
	'tenant_cache.command_timeout_ms' => 2000,
);
my $primary = tc_node(
	'primary',
	redis_port => $redis->port,
	start => 0,
	settings => {
		%tc_settings,
		'wal_level' => 'replica',
		'max_wal_senders' => 4,
		'max_replication_slots' => 4,
		'hot_standby' => 'on',
	});
$primary->start;

$primary->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id serial PRIMARY KEY, tenant_id int, client_id int,
                     bu_id int, name text);
SELECT tenant_cache.register_dependency('People',
    ARRAY['dropdown:people', 'dashboard:metrics'], 'tenant');
SELECT tenant_cache.watch_table('people', 'People', 'tenant_id', 'client_id', 'bu_id');
INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES (1, 1, 1, 'setup');
});
ok($primary->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'primary: queue drained after the setup, its worker is connected');
like(worker_pid($primary), qr/^\d+$/, 'primary: a worker runs');

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
# The backup carries the primary's postgresql.conf; say it again, so that
# the standby's settings do not depend on that.
$standby->append_conf('postgresql.conf',
	"\n# tenant_cache TAP test settings\n"
	  . join('', map { "$_ = '$tc_settings{$_}'\n" } sort keys %tc_settings));
$standby->start;
$primary->wait_for_catchup($standby, 'replay');

is($standby->safe_psql('postgres', 'SELECT pg_is_in_recovery()'), 't',
	'the standby is in recovery');
is($standby->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'tenant_cache', 'the standby preloads tenant_cache');

# Watch the standby for a while: a worker that started and failed (or was
# restarted every second) would show up at some point.
sub standby_workers
{
	return $standby->safe_psql('postgres',
		"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'tenant_cache worker'");
}
my ($polls, $seen) = (0, 0);
my $t_watch = Time::HiRes::time();
while (Time::HiRes::time() - $t_watch < 4)
{
	$polls++;
	$seen++ if standby_workers() ne '0';
	usleep(100_000);
}
is($seen, 0, "the standby runs no tenant_cache worker ($polls looks over 4 s)");
ok(!$standby->log_contains(qr/tenant_cache worker started/),
	'no worker ever started on the standby');
is(scalar($redis->clients), 1,
	'Redis has one client: the primary\'s worker, not the standby');

my @affected;
foreach my $t (1 .. 5)
{
	push @affected, "tenant:$t:client:1:bu:1:dropdown:people:all",
	  "tenant:$t:client:2:bu:3:dashboard:metrics:today";
}
my @unaffected = (
	'tenant:6:client:1:bu:1:dropdown:people:all',
	'tenant:1:client:1:bu:1:report:daily:x',
	'session:abc');
$redis->set_keys(@affected, @unaffected);

my $log_offset = -s $primary->logfile;
$redis->stop(save => 1);
$faults++;

subtest 'invalidations pile up on the primary and replicate' => sub {
	# 50 transactions over tenants 1..5 while Redis is down.
	$primary->safe_psql('postgres',
		join('', map {
			my $t = 1 + $_ % 5;
			"INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES ($t, $_, 1, 'w');\n"
		} 1 .. 50));
	ok(defined wait_absorbed($primary), 'the worker folded the commits into the queue');
	my @rows = queue_rows($primary);
	my %globs = map { $_->{glob} => 1 } @rows;
	cmp_ok(scalar(@rows), '>', 0, 'the primary\'s queue holds the invalidations');
	my @want = sort map {
		my $t = $_;
		map { "tenant:$t:client:*:bu:*:$_*" } 'dropdown:people', 'dashboard:metrics'
	} 1 .. 5;
	is_deeply([ sort keys %globs ], \@want, 'the globs of the 5 tenants and 2 patterns');
	is(scalar(@rows), scalar(@want), 'one row per glob (twins are not queued again)');
	ok( defined wait_until(
			sub { $primary->log_contains(qr/WARNING:  tenant_cache worker .*Redis/, $log_offset) },
			30),
		'the primary\'s worker tried Redis and failed');

	# The worker commits asynchronously: wait for what was inserted, not
	# only for what was flushed.
	$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
	my @replica = queue_rows($standby);
	@rows = queue_rows($primary);
	is_deeply([ map { "$_->{id} $_->{glob}" } @replica ],
		[ map { "$_->{id} $_->{glob}" } @rows ],
		'the standby has the same queue entries');
	is(standby_workers(), '0', 'still no worker on the standby');
	diag sprintf('%d queue entries replicated to the standby', scalar(@replica));
};

my $t_crash = Time::HiRes::time();
$primary->stop('immediate');
$faults++;

subtest 'the promoted standby starts a worker that drains the queue' => sub {
	my $t_promote = Time::HiRes::time();
	$standby->promote;
	ok($standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'),
		'the standby is promoted');
	my $pid;
	my $secs = wait_until(sub { ($pid = worker_pid($standby)) =~ /^\d+$/ },
		60, $t_promote);
	ok(defined $secs, 'a tenant_cache worker starts on the promoted node');
	diag sprintf('worker pid %s seen %.3f s after pg_ctl promote was started',
		$pid // '?', $secs // -1);
	cmp_ok(queue_count($standby), '>', 0, 'the queue waits for Redis');

	my $t0 = Time::HiRes::time();
	$redis->start;
	my $latency = wait_until(sub { $redis->count_existing(@affected) == 0 }, 60, $t0);
	ok(defined $latency, 'every key of the writes made on the old primary is cleared');
	diag sprintf('keys gone %.3f s after Redis was started again (max_retry_interval_ms = %d)',
		$latency // -1, $max_retry_ms);
	cmp_ok($latency // 1e9, '<=', $max_retry_ms / 1000 + 2,
		'within max_retry_interval_ms + 2 s');
	ok($standby->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'the queue is drained');
	$expected += @affected;
	$lost += $redis->count_existing(@affected);
	is_deeply([ $redis->keys ], [ sort @unaffected ], 'the other keys are kept');
};

subtest 'new writes on the promoted node are applied' => sub {
	my @keys = ('tenant:6:client:1:bu:1:dropdown:people:all');
	my $t0 = Time::HiRes::time();
	$standby->safe_psql('postgres',
		q{INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES (6, 1, 1, 'new')});
	my $latency = wait_until(sub { $redis->count_existing(@keys) == 0 }, 30, $t0);
	ok(defined $latency && $latency <= 2.0, 'cleared within 2 s of the commit');
	diag sprintf('promoted node: key gone %.3f s after the commit', $latency // -1);
	$expected += @keys;
	$lost += $redis->count_existing(@keys);
	is_deeply([ $redis->keys ],
		[ sort grep { $_ ne $keys[0] } @unaffected ], 'the other keys are kept');
};

fault_summary($faults, $expected, $lost);

$standby->stop;
$redis->stop;
done_testing();
