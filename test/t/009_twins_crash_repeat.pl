
# Copyright (c) tenant_cache authors

# Reliability of the queue itself:
#  - while Redis is down, repeated writes leave one queue row per glob;
#  - a glob queued again while its twin is being applied (locked by the
#    worker between its UNLINK and its commit) is applied again, not
#    swallowed;
#  - the worker killed with SIGKILL between UNLINK and commit: the cluster
#    restarts and the batch is applied again;
#  - tenant_cache.repeat_after_ms: a stale value written back by a reader
#    after the UNLINK survives without it (documented limitation) and is gone
#    after the delay with it.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my ($faults, $expected, $lost) = (0, 0, 0);

my $redis = TenantCacheTest::Redis->new(name => 'twins');
my $node = tc_node(
	'twins',
	redis_port => $redis->port,
	settings => {
		'tenant_cache.poll_interval_ms' => 500,
		'tenant_cache.max_retry_interval_ms' => 1000,
		'restart_after_crash' => 'on',
	});
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
SELECT tenant_cache.register_dependency('People', ARRAY['dash']);
CREATE TABLE people (id serial, tenant_id int, name text);
SELECT tenant_cache.watch_table('people', 'People', 'tenant_id');
});

sub key_of { return "tenant:$_[0]:client:c:bu:b:dash:x"; }
sub write_tenant
{
	my ($t) = @_;
	$node->safe_psql('postgres', "INSERT INTO people (tenant_id, name) VALUES ($t, 'x')");
	return;
}
# 1. Redis down: 60 transactions over 2 tenants leave 2 queue rows.  The
# cached keys are saved with Redis and are there again when it returns (set
# after its restart, the worker could clear them before they were set).
$redis->set_keys(key_of(1), key_of(2), key_of(3));
$redis->stop(save => 1);
$faults++;
write_tenant(1 + $_ % 2) for 1 .. 60;
ok(defined wait_absorbed($node), 'the worker folds the commits into the queue');
is($node->safe_psql('postgres', 'SELECT count(*) FROM tenant_cache.queue'),
	'2', 'while Redis is down, 60 transactions of 2 tenants leave 2 queue rows');
is( $node->safe_psql(
		'postgres', 'SELECT count(DISTINCT glob) FROM tenant_cache.queue'),
	'2', '... one per distinct glob');
$redis->start;
$expected += 2;
my $gone = wait_until(sub { $redis->count_existing(key_of(1), key_of(2)) == 0 }, 5);
ok(defined $gone, 'after Redis returns both tenants\' keys are cleared');
$lost++ unless defined $gone;
ok($redis->exists(key_of(3)), 'another tenant\'s key is kept');
ok(defined wait_until(sub { queue_count($node) == 0 }, 5), 'queue empty');

# 2. A twin queued while the worker applies the first: applied again.
set_setting($node, 'tenant_cache.debug_pause_before_commit_ms', 3000);
$redis->set_keys(key_of(4));
write_tenant(4);
ok(defined wait_until(sub { !$redis->exists(key_of(4)) }, 5),
	'first write applied (UNLINK done; the worker now waits before its commit)');
# A reader refills the cache with what it read before the second write...
$redis->set_keys(key_of(4));
# ... and the second write commits while the first entry is still locked.
write_tenant(4);
$expected++;
is( $node->safe_psql(
		'postgres', "SELECT count(*) FROM tenant_cache.queue WHERE glob LIKE 'tenant:4:%'"),
	'2', 'the second write queued its own entry (its twin is being applied)');
$gone = wait_until(sub { !$redis->exists(key_of(4)) && queue_count($node) == 0 }, 10);
ok(defined $gone, 'the second entry was applied too, after the first committed');
$lost++ unless defined $gone;

# 3. kill -9 of the worker between UNLINK and commit: applied again.
$redis->set_keys(key_of(5));
write_tenant(5);
$expected++;
ok(defined wait_until(sub { !$redis->exists(key_of(5)) }, 5),
	'UNLINK done, worker paused before its commit');
my $pid = worker_pid($node);
$redis->set_keys(key_of(5));    # so that a second application shows
kill 'KILL', $pid;
$faults++;
note "killed worker $pid with SIGKILL";
ok( defined wait_until(
		sub {
			my ($rc, $out) = $node->psql('postgres',
				"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'tenant_cache worker' AND pid <> $pid");
			return $rc == 0 && $out eq '1';
		},
		30),
	'the cluster restarted after the crash and runs a new worker');
$gone = wait_until(sub { !$redis->exists(key_of(5)) }, 15);
ok(defined $gone, 'the batch was applied again after the crash');
$lost++ unless defined $gone;
ok(defined wait_until(sub { queue_count($node) == 0 }, 10), 'and then removed from the queue');
like(slurp_file($node->logfile), qr/terminated by signal 9/, 'the crash is in the log');
set_setting($node, 'tenant_cache.debug_pause_before_commit_ms', 0);

# 4. Stale refill after the UNLINK: survives without repeat_after_ms ...
$redis->set_keys(key_of(6));
write_tenant(6);
ok(defined wait_until(sub { !$redis->exists(key_of(6)) }, 5), 'applied');
$redis->set_keys(key_of(6));    # a reader that read the old row writes back
$node->safe_psql('postgres', 'SELECT pg_sleep(1.5)');
ok($redis->exists(key_of(6)),
	'without repeat_after_ms a stale refill after the UNLINK survives (documented)');

# ... and is gone after the delay with it.
set_setting($node, 'tenant_cache.repeat_after_ms', 800);
$redis->set_keys(key_of(7));
write_tenant(7);
$expected++;
ok(defined wait_until(sub { !$redis->exists(key_of(7)) }, 5), 'applied once');
my $applied = wait_until(
	sub {
		$node->safe_psql('postgres',
			"SELECT count(*) FROM tenant_cache.queue WHERE applied_at IS NOT NULL") eq '1';
	},
	5);
ok(defined $applied, 'its entry waits for the repeat, marked applied');
$redis->set_keys(key_of(7));    # stale refill
$gone = wait_until(sub { !$redis->exists(key_of(7)) }, 5);
ok(defined $gone, 'with repeat_after_ms the stale refill is cleared by the repeat');
$lost++ unless defined $gone;
note sprintf('stale value gone %.2f s after the refill (repeat_after_ms = 800)', $gone // -1);
ok(defined wait_until(sub { queue_count($node) == 0 }, 5),
	'after its repeat the entry leaves the queue');

fault_summary($faults, $expected, $lost);

$node->stop;
$redis->stop;
done_testing();
