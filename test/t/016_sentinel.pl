
# Copyright (c) tenant_cache authors

# Redis Sentinel (tenant_cache.redis_mode = sentinel), against real servers
# on loopback: a master, a replica and a sentinel (quorum 1).
#  - bad values of redis_mode, redis_nodes and sentinel_master are refused
#    with a clear message;
#  - the worker asks the sentinel for the master and works there (its
#    redis_port points at the replica, which would answer READONLY);
#  - during a stream of writes, SENTINEL FAILOVER promotes the replica: the
#    worker follows the new master (READONLY from the demoted one, or its
#    lost connection, sends it back to the sentinel), every key the writes
#    affect ends gone on the new master, both exact keys (UNLINK) and globs
#    (SCAN), the other tenant's and the unwritten rows' keys are all still
#    there, and the queue ends empty;
#  - READONLY (the worker pointed at the demoted master) keeps the entry
#    queued; back in sentinel mode it is applied.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $master = TenantCacheTest::Redis->new(name => 'master');
my $replica = TenantCacheTest::Redis->new(
	name => 'replica',
	args => [ '--replicaof', '127.0.0.1', $master->port ]);

sub link_up
{
	my ($r) = @_;
	return scalar grep { /^master_link_status:up/ } $r->try_cmd('INFO', 'replication');
}
ok(defined wait_until(sub { link_up($replica) }, 60), 'the replica is in sync');

my $sentinel = TenantCacheTest::Redis->new(
	name => 'sentinel',
	sentinel => sprintf(
		"sentinel monitor mymaster 127.0.0.1 %d 1\n"
		  . "sentinel down-after-milliseconds mymaster 2000\n"
		  . "sentinel failover-timeout mymaster 20000\n",
		$master->port));

sub master_port
{
	my @a = $sentinel->cmd('SENTINEL', 'get-master-addr-by-name', 'mymaster');
	return $a[1] // 0;
}
ok( defined wait_until(
		sub {
			grep { $_ eq $replica->port }
			  $sentinel->cmd('SENTINEL', 'replicas', 'mymaster');
		},
		60),
	'the sentinel knows the replica');

my $node = tc_node(
	'sentinel',
	redis_port => $replica->port,    # ignored in sentinel mode
	settings => {
		'tenant_cache.redis_mode' => 'sentinel',
		'tenant_cache.redis_nodes' => '127.0.0.1:' . $sentinel->port,
		'tenant_cache.sentinel_master' => 'mymaster',
		'tenant_cache.poll_interval_ms' => 200,
		'tenant_cache.max_retry_interval_ms' => 500,
		'tenant_cache.command_timeout_ms' => 2000,
		'tenant_cache.connect_timeout_ms' => 1000,
		# Replication is asynchronous: an UNLINK the old master acknowledged
		# just before the promotion may never reach the replica.  Applying
		# each glob once more 3 s later covers that (see README).
		'tenant_cache.repeat_after_ms' => 3000,
	});

# 1. Bad values are refused.
foreach my $case (
	[ 'redis_mode', 'bogus', qr/invalid value for parameter "tenant_cache\.redis_mode"/ ],
	[ 'redis_nodes', '127.0.0.1', qr/invalid tenant_cache\.redis_nodes.*\n.*DETAIL:  Entry "127\.0\.0\.1" is not host:port\./ ],
	[ 'redis_nodes', '127.0.0.1:26379,:5', qr/DETAIL:  Entry ":5" is not host:port\./ ],
	[ 'redis_nodes', '127.0.0.1:70000', qr/DETAIL:  Entry "127\.0\.0\.1:70000" has no valid port/ ],
	[ 'redis_nodes', '127.0.0.1:1,,127.0.0.1:2', qr/DETAIL:  An entry of the list is empty\./ ],
	[ 'sentinel_master', 'my master', qr/DETAIL:  A master name must not contain spaces/ ])
{
	my ($name, $value, $re) = @$case;
	my ($ret, $out, $err) = $node->psql('postgres',
		"ALTER SYSTEM SET tenant_cache.$name = '$value'");
	isnt($ret, 0, "tenant_cache.$name = '$value' is refused");
	like($err, $re, "... with a clear message");
}

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id int PRIMARY KEY, tenant_id text, client_id int, bu_id int);
SELECT tenant_cache.register_dependency('Person', ARRAY['person:{id}$', 'card:{id}:'], 'bu');
SELECT tenant_cache.watch_table('people', 'Person', 'tenant_id', 'client_id', 'bu_id');
});

my $n = 150;
my (@affected, @kept);
foreach my $id (1 .. $n + 30)
{
	my @k = ("tenant:1:client:1:bu:1:person:$id",
		"tenant:1:client:1:bu:1:card:$id:a",
		"tenant:1:client:1:bu:1:card:$id:b");
	if ($id <= $n) { push @affected, @k; }
	else { push @kept, @k; }
	push @kept, "tenant:2:client:1:bu:1:person:$id",
	  "tenant:2:client:1:bu:1:card:$id:a";
}
push @kept, "tenant:1:client:1:bu:1:person:1:x";    # not the exact key
$master->set_keys(@affected, @kept);
$master->cmd('WAIT', '1', '5000');
is($replica->count_existing(@affected, @kept), @affected + @kept,
	'the replica has every key');

# 2. The worker works on the master the sentinel names.
$node->safe_psql('postgres', "INSERT INTO people VALUES (1, '1', 1, 1)");
ok(defined wait_until(sub { $master->count_existing(@affected[ 0 .. 2 ]) == 0 }, 30),
	'the first row\'s keys are gone on the master');
ok($node->log_contains(qr/connected to Redis at 127\.0\.0\.1:${\$master->port} \(master "mymaster" of the sentinels\)/),
	'the worker connected to the master the sentinel named');

# 3. Failover during a stream of writes.
my $old_port = $master->port;
foreach my $id (2 .. $n)
{
	$node->safe_psql('postgres', "INSERT INTO people VALUES ($id, '1', 1, 1)");
	if ($id == 50)
	{
		is($sentinel->cmd('SENTINEL', 'FAILOVER', 'mymaster'), 'OK',
			'SENTINEL FAILOVER accepted');
	}
}
ok(defined wait_until(sub { master_port() == $replica->port }, 60),
	'the sentinel names the replica as the new master');
my $new = $replica;

my $secs = wait_until(sub { $new->count_existing(@affected) == 0 }, 60);
ok(defined $secs, 'every affected key is gone on the new master');
is($new->count_existing(@affected), 0, 'lost = 0');
is($new->count_existing(@kept), scalar @kept,
	'the other tenant\'s keys and the unwritten rows\' keys are all there');
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'the queue ends empty');
ok($node->log_contains(qr/connected to Redis at 127\.0\.0\.1:${\$replica->port} \(master "mymaster" of the sentinels\)/),
	'the worker reconnected to the new master');

# 4. Writes after the failover are applied on the new master at once.
$new->set_keys('tenant:1:client:1:bu:1:person:999');
$node->safe_psql('postgres', "INSERT INTO people VALUES (999, '1', 1, 1)");
ok(defined wait_until(sub { !$new->exists('tenant:1:client:1:bu:1:person:999') }, 30),
	'a write after the failover clears its key on the new master');

# 5. READONLY is no refusal: pointed (standalone) at the demoted old
# master, now a replica, the worker keeps the entry queued, READONLY in
# last_error; back in sentinel mode, it is applied on the master.
sub set_conf
{
	my ($sql, $check) = @_;
	$node->safe_psql('postgres', "$sql SELECT pg_reload_conf();");
	ok($node->poll_query_until('postgres', $check), "reloaded: $check");
	return;
}
ok(defined wait_until(sub { link_up($master) }, 60), 'the old master is a replica now');
set_conf("ALTER SYSTEM SET tenant_cache.redis_mode = 'standalone';
	ALTER SYSTEM SET tenant_cache.redis_port = $old_port;",
	"SELECT current_setting('tenant_cache.redis_mode') = 'standalone'");
$new->set_keys('tenant:1:client:1:bu:1:person:1000');
$node->safe_psql('postgres', "INSERT INTO people VALUES (1000, '1', 1, 1)");
ok($node->poll_query_until('postgres',
		"SELECT bool_or(last_error LIKE '%READONLY%') FROM tenant_cache.queue"),
	'against a replica the entry stays queued with READONLY in last_error');
ok($new->exists('tenant:1:client:1:bu:1:person:1000'), '... and its key is still there');
set_conf("ALTER SYSTEM SET tenant_cache.redis_mode = 'sentinel';",
	"SELECT current_setting('tenant_cache.redis_mode') = 'sentinel'");
ok(defined wait_until(sub { !$new->exists('tenant:1:client:1:bu:1:person:1000') }, 30),
	'back in sentinel mode the entry is applied on the master');
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'the queue ends empty');

$node->stop;
done_testing();
