
# Copyright (c) tenant_cache authors

# Several databases on one cluster (tenant_cache.database = 'app_a, app_b'),
# with two key formats (app_b's set by ALTER DATABASE ... SET):
#  - one worker per database, named after it;
#  - a write in each database clears only that database's keys, in its own
#    key format, and only the written tenant's;
#  - each database's stats show its own worker and counters, and health()
#    its own worker;
#  - while one database's worker is down (terminated, and kept from starting
#    again), the other keeps draining, and the stopped one drains what was
#    queued meanwhile once it runs again;
#  - the setting's and key_format's rules: list checks, no per-session or
#    per-role key_format.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $redis = TenantCacheTest::Redis->new;
my $node = tc_node(
	'databases',
	redis_port => $redis->port,
	settings => { 'tenant_cache.poll_interval_ms' => 5000 });

# The databases exist before the workers are pointed at them.
$node->safe_psql('postgres', 'CREATE DATABASE app_a');
$node->safe_psql('postgres', 'CREATE DATABASE app_b');
$node->safe_psql('postgres',
	q{ALTER DATABASE app_b SET tenant_cache.key_format = 'b|{tenant}|{pattern}'});
$node->append_conf('postgresql.conf', "tenant_cache.database = 'app_a, app_b'\n");
$node->restart;

sub sql
{
	my ($db, $query) = @_;
	return $node->safe_psql($db, $query);
}

sub worker_of
{
	my ($db) = @_;
	return sql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'tenant_cache worker' AND datname = '$db'"
	);
}

ok( $node->poll_query_until(
		'postgres',
		q{SELECT string_agg(datname || ':' || application_name, ',' ORDER BY datname)
		  FROM pg_stat_activity WHERE backend_type = 'tenant_cache worker'},
		'app_a:tenant_cache worker,app_b:tenant_cache worker'),
	'one worker in each database');
ok( $node->log_contains(qr/tenant_cache worker started for database "app_a"/)
	  && $node->log_contains(qr/tenant_cache worker started for database "app_b"/),
	'each worker logs its database');

is(sql('app_a', 'SHOW tenant_cache.key_format'),
	'tenant:{tenant}:client:{client}:bu:{bu}:{pattern}', 'app_a: the global key_format');
is(sql('app_b', 'SHOW tenant_cache.key_format'),
	'b|{tenant}|{pattern}', "app_b: its own key_format");

foreach my $db ('app_a', 'app_b')
{
	sql(
		$db, q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id int PRIMARY KEY, tenant_id int, client_id int,
                     bu_id int, name text);
SELECT tenant_cache.register_dependency('People',
    ARRAY['dropdown:people', 'dashboard:metrics'], 'tenant');
SELECT tenant_cache.watch_table('people', 'People', 'tenant_id', 'client_id', 'bu_id');
INSERT INTO people VALUES (1, 1, 2, 3, 'ann'), (2, 2, 2, 3, 'bob');
});
	ok($node->poll_query_until($db, 'SELECT count(*) = 0 FROM tenant_cache.queue'),
		"$db: the queue is drained after the setup");
	ok($node->poll_query_until($db, 'SELECT redis_connected FROM tenant_cache.stats'),
		"$db: its worker is connected to Redis");
	sql($db, 'SELECT tenant_cache.stats_reset()');
}

my @a1 = qw(tenant:1:client:2:bu:3:dropdown:people:all
  tenant:1:client:2:bu:3:dashboard:metrics:today);
my @a2 = qw(tenant:2:client:2:bu:3:dropdown:people:all);
my @b1 = ('b|1|dropdown:people:all', 'b|1|dashboard:metrics:today');
my @b2 = ('b|2|dropdown:people:all');

sub seed { $redis->set_keys(@a1, @a2, @b1, @b2); }

sub gone
{
	my @keys = @_;
	return defined wait_until(sub { $redis->count_existing(@keys) == 0 }, 30);
}

# 1. A write in app_a clears tenant 1's keys of app_a's format only.
seed();
sql('app_a', q{UPDATE people SET name = 'ann2' WHERE id = 1});
ok(gone(@a1), "app_a write: tenant 1's keys of app_a's key format are gone");
ok($node->poll_query_until('app_a', 'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'app_a write: applied');
is($redis->count_existing(@a2, @b1, @b2),
	4, "app_a write: tenant 2's keys and app_b's keys remain");

# 2. A write in app_b clears tenant 1's keys of app_b's format only.
seed();
sql('app_b', q{UPDATE people SET name = 'ann3' WHERE id = 1});
ok(gone(@b1), "app_b write: tenant 1's keys of app_b's key format are gone");
ok($node->poll_query_until('app_b', 'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'app_b write: applied');
is($redis->count_existing(@a1, @a2, @b2),
	4, "app_b write: app_a's keys and tenant 2's keys remain");

# 3. Each database's stats and health show its own worker.
my %pid = (app_a => worker_of('app_a'), app_b => worker_of('app_b'));
isnt($pid{app_a}, $pid{app_b}, 'two worker processes');
foreach my $db ('app_a', 'app_b')
{
	open my $fh, '<', "/proc/$pid{$db}/cmdline" or die "cmdline of $pid{$db}: $!";
	my $title = <$fh>;
	close $fh;
	like($title, qr/tenant_cache worker for $db/, "$db: its worker's process title names it");
}
foreach my $db ('app_a', 'app_b')
{
	is( sql($db,
			'SELECT worker_pid, worker_state, globs_applied, keys_deleted, pattern_queued FROM tenant_cache.stats, '
			  . "(SELECT sum(queued) AS pattern_queued FROM tenant_cache.pattern_stats WHERE model = 'People') p"
		),
		"$pid{$db}|idle|2|2|2",
		"$db: stats show its worker and its own counters (2 globs, 2 keys)");
	is( sql($db, 'SELECT status, message ~ ' . "'^worker pid $pid{$db} is idle' FROM tenant_cache.health()"),
		'healthy|t', "$db: health() reports its own worker");
}
# 4. app_a's worker down (terminated, and kept from starting again by
# refusing connections to app_a): app_b drains on; app_a's session that is
# still connected sees its worker down and queues, drained once it is back.
my $session = $node->background_psql('app_a');
sql('postgres', 'ALTER DATABASE app_a ALLOW_CONNECTIONS false');
sql('postgres', "SELECT pg_terminate_backend($pid{app_a})");
ok( defined wait_until(
		sub {
			$session->query_safe(
				q{SELECT s.worker_state || '|' || h.status || '|' || h.message
				  FROM tenant_cache.stats s, tenant_cache.health() h})
			  =~ /^not running\|down\|the worker is not running/;
		},
		30),
	"app_a: stats and health say its worker is not running");
seed();
$session->query_safe(q{UPDATE people SET name = 'bob2' WHERE id = 2});
sql('app_b', q{UPDATE people SET name = 'bob3' WHERE id = 2});
ok(gone(@b2), "app_a's worker down: app_b's write is applied");
is(worker_of('app_b'), $pid{app_b}, "app_b's worker is the same process");
is(sql('app_b', 'SELECT status FROM tenant_cache.health()'),
	'healthy', 'app_b: healthy meanwhile');
is($redis->count_existing(@a2), 1, "app_a's write waits for its worker");
is($session->query_safe('SELECT count(*) FROM tenant_cache.queue'),
	'2', "app_a's write is queued (two globs)");
sql('postgres', 'ALTER DATABASE app_a ALLOW_CONNECTIONS true');
ok(gone(@a2), "app_a's worker back: the write queued meanwhile is applied");
isnt(worker_of('app_a'), $pid{app_a}, "app_a's worker is a new process");
$session->quit;

# 5. A database no worker drains says so.
sql('postgres', 'CREATE EXTENSION tenant_cache');
like(sql('postgres', q{SELECT status || ': ' || message FROM tenant_cache.health()}),
	qr/^down: no worker drains database "postgres" \(tenant_cache.database is "app_a, app_b"\)/,
	'postgres: health() says no worker drains it');

# 6. The rules of the settings.
my ($ret, $out, $err) = $node->psql('postgres',
	q{ALTER SYSTEM SET tenant_cache.database = 'app_a, app_a'});
like($err, qr/Database "app_a" is listed more than once/, 'a database listed twice is refused');
($ret, $out, $err) = $node->psql('postgres',
	'ALTER SYSTEM SET tenant_cache.database = '
	  . join(', ', map { "'d$_'" } 1 .. 17));
like($err, qr/At most 16 databases can be listed/, 'more than 16 databases are refused');
($ret, $out, $err) = $node->psql('postgres',
	q{ALTER SYSTEM SET tenant_cache.database = 'app_a,,app_b'});
like($err, qr/invalid value for parameter "tenant_cache.database"/, 'an empty name is refused');
($ret, $out, $err) = $node->psql('postgres',
	q{ALTER SYSTEM SET tenant_cache.database = '"app, a", app_b'});
is($ret, 0, 'a double-quoted name may hold a comma') or diag $err;
sql('postgres', 'ALTER SYSTEM RESET tenant_cache.database');
($ret, $out, $err) = $node->psql('app_a',
	q{SET tenant_cache.key_format = 'x:{tenant}:{pattern}'});
like($err, qr/tenant_cache.key_format cannot be set per session or per role/,
	'key_format cannot be set per session');
($ret, $out, $err) = $node->psql('postgres',
	q{ALTER DATABASE app_a SET tenant_cache.key_format = 'x:{pattern}'});
like($err, qr/The format must contain \{tenant\} and \{pattern\}/,
	'ALTER DATABASE SET key_format checks the format');
sql('postgres', 'CREATE ROLE app_owner LOGIN');
sql('postgres', 'ALTER DATABASE app_a OWNER TO app_owner');
($ret, $out, $err) = $node->psql('postgres',
	q{ALTER DATABASE app_a SET tenant_cache.key_format = 'x:{tenant}:{pattern}'},
	extra_params => [ '-U', 'app_owner' ]);
like($err, qr/permission denied to set parameter "tenant_cache.key_format"/,
	'the database owner (not a superuser) cannot set key_format');
sql('postgres',
	q{ALTER ROLE app_owner SET tenant_cache.key_format = 'x:{tenant}:{pattern}'});
($ret, $out, $err) = $node->psql('app_a', 'SHOW tenant_cache.key_format',
	extra_params => [ '-U', 'app_owner' ]);
is($out, 'tenant:{tenant}:client:{client}:bu:{bu}:{pattern}',
	'a per-role key_format is not applied');
like($err, qr/tenant_cache.key_format cannot be set per session or per role/,
	'a per-role key_format is refused with a warning at connect');

$node->stop;
done_testing();
