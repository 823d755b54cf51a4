
# Copyright (c) tenant_cache authors

# Logical replication and queue health:
#  - watch_table(..., fire_on_replica => true): rows applied by a logical
#    replication subscription fire the triggers (ENABLE ALWAYS) and clear the
#    subscriber's cache; without it they do not (PostgreSQL's default);
#  - a burst of invalidations is drained, and the queue table does not keep
#    growing (size reported); a long transaction holding back vacuum does not
#    make the worker rescan dead rows quadratically (drain rates reported,
#    before and during).  test/bench can run the full-size version.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $burst = $ENV{TC_QUEUE_BURST} // 5000;
my $drain_timeout = 120 + $burst / 500;

my $redis = TenantCacheTest::Redis->new(name => 'sub');

# Publisher: plain PostgreSQL, no tenant_cache.
my $pub = PostgreSQL::Test::Cluster->new('publisher');
$pub->init(allows_streaming => 'logical');
$pub->start;
$pub->safe_psql(
	'postgres', q{
CREATE TABLE people (id int PRIMARY KEY, tenant_id int, name text);
CREATE TABLE asset (id int PRIMARY KEY, tenant_id int, name text);
CREATE PUBLICATION app FOR TABLE people, asset;
});

# Subscriber: the app's cache lives next to it.
my $sub = tc_node(
	'subscriber',
	redis_port => $redis->port,
	settings => {
		'tenant_cache.poll_interval_ms' => 500,
		'tenant_cache.batch_size' => 500,
	});
$sub->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id int PRIMARY KEY, tenant_id int, name text);
CREATE TABLE asset (id int PRIMARY KEY, tenant_id int, name text);
SELECT tenant_cache.register_dependency('People', ARRAY['dash']);
SELECT tenant_cache.register_dependency('Asset', ARRAY['assets']);
SELECT tenant_cache.watch_table('people', 'People', fire_on_replica => true);
SELECT tenant_cache.watch_table('asset', 'Asset');
});
is( $sub->safe_psql(
		'postgres',
		"SELECT string_agg(table_name::text || ':' || enabled::text, ',' ORDER BY table_name::text) FROM tenant_cache.watched_tables"),
	'asset:O,people:A',
	'fire_on_replica enables the triggers ALWAYS');
my $connstr = $pub->connstr . ' dbname=postgres';
$sub->safe_psql('postgres',
	"CREATE SUBSCRIPTION app CONNECTION '$connstr' PUBLICATION app");
$pub->wait_for_catchup('app');

$redis->set_keys('tenant:1:client:c:bu:b:dash:x', 'tenant:2:client:c:bu:b:dash:x',
	'tenant:1:client:c:bu:b:assets:x');
$pub->safe_psql('postgres',
	"INSERT INTO people VALUES (1, 1, 'Ann'); INSERT INTO asset VALUES (1, 1, 'pump')");
$pub->wait_for_catchup('app');
my $gone = wait_until(sub { !$redis->exists('tenant:1:client:c:bu:b:dash:x') }, 5);
ok(defined $gone, 'a row replicated into the subscriber clears its cache keys');
note sprintf('publisher commit -> subscriber key gone: %.3f s', $gone // -1);
ok($redis->exists('tenant:2:client:c:bu:b:dash:x'), 'other tenants\' keys are kept');
$sub->safe_psql('postgres', 'SELECT pg_sleep(1)');
ok($redis->exists('tenant:1:client:c:bu:b:assets:x'),
	'a table watched without fire_on_replica ignores replicated rows');
$pub->safe_psql('postgres', "UPDATE people SET tenant_id = 2 WHERE id = 1");
$pub->wait_for_catchup('app');
ok(defined wait_until(sub { !$redis->exists('tenant:2:client:c:bu:b:dash:x') }, 5),
	'a replicated UPDATE moving a row to tenant 2 clears tenant 2');
$sub->safe_psql('postgres', 'DROP SUBSCRIPTION app');
$pub->stop;

# Queue health: a burst of distinct globs, drained; the table stays small.
sub burst
{
	my ($first) = @_;
	my $t0 = time;
	$sub->safe_psql('postgres',
		"DO \$\$ BEGIN FOR i IN $first .. $first + $burst - 1 LOOP "
		  . "INSERT INTO people VALUES (i + 10, i, 'x'); COMMIT; END LOOP; END \$\$");
	return time - $t0;
}

sub drain_rate
{
	my ($label, $first) = @_;
	$redis->pause;
	my $wrote = burst($first);
	my $queued = queue_count($sub);
	my $t0 = time;
	$redis->resume;
	my $drained = wait_until(sub { queue_count($sub) == 0 }, $drain_timeout);
	ok(defined $drained, "$label: $queued queued invalidations drained");
	my $rate = defined $drained ? $queued / (time - $t0) : 0;
	diag(sprintf('%s: %d invalidations written in %.2f s, drained at %.0f/s',
			$label, $queued, $wrote, $rate));
	return $rate;
}

my $rate_before = drain_rate('queue drain, vacuum free', 1000);
$sub->safe_psql('postgres', 'VACUUM tenant_cache.pending');
my $size_after_first = $sub->safe_psql('postgres',
	"SELECT pg_total_relation_size('tenant_cache.pending')");

# A long transaction with a snapshot: the first burst's dead rows and the
# second's cannot be vacuumed while it is open.
my $holder = $sub->background_psql('postgres');
$holder->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$holder->query_safe('SELECT count(*) FROM people');
my $rate_during = drain_rate('queue drain, vacuum held back', 1000 + $burst);
$holder->query_safe('COMMIT');
$holder->quit;

cmp_ok($rate_during, '>=', $rate_before / 5,
	'dead rows held by an old snapshot do not make the drain quadratic');
diag(sprintf('drain rate with vacuum held back / free: %.2f', $rate_during / ($rate_before || 1)));

$sub->safe_psql('postgres', 'VACUUM tenant_cache.pending');
drain_rate('queue drain, third burst', 1000 + 2 * $burst);
$sub->safe_psql('postgres', 'VACUUM tenant_cache.pending');
my $size_end = $sub->safe_psql('postgres',
	"SELECT pg_total_relation_size('tenant_cache.pending')");
diag(sprintf('queue table size after bursts of %d: %d kB after the first, %d kB after the third',
		$burst, $size_after_first / 1024, $size_end / 1024));
cmp_ok($size_end, '<=', 3 * $size_after_first + 1024 * 1024,
	'the queue table does not keep growing: vacuum reclaims drained rows');

$sub->stop;
$redis->stop;
done_testing();
