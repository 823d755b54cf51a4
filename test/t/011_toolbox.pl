
# Copyright (c) tenant_cache authors

# The operations toolbox against a real Redis, reached as a least-privilege
# ACL user whose password is in a file:
#  - stats: counters move with the worker's work (globs applied, keys deleted,
#    SCAN passes, commit-to-applied lag bounded by what the test measured),
#    show the connection error while Redis is down (the queue rows do not),
#    survive pg_terminate_backend of the worker and a clean restart (not a
#    crash), and stats_reset() zeroes them;
#  - pattern_stats per model and pattern, ad-hoc patterns included;
#  - health(): healthy; down while Redis is stopped; degraded by failing and
#    old entries (ACL NOPERM); down while the worker is not running;
#  - redis_info() against redis-cli's own INFO, evictions included;
#  - explore() and count_keys() list and count exactly the keys
#    invalidate_pattern() would clear (never another tenant's), clear
#    nothing, and say when they stopped early (max_keys, time limit);
#  - memory_by_pattern() against MEMORY USAGE summed by the test;
#  - invalidate_all() clears every key of key_format and nothing else;
#  - the password appears in no output, error or log line.

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $password = 'Toolbox-s3cret-Pa55';
my $wrong_password = 'Not-the-toolbox-pa55';
my $max_retry_ms = 1000;

my $redis = TenantCacheTest::Redis->new(name => 'toolbox');
my @acl = ('on', ">$password", '~tenant:*', 'resetchannels', '-@all', '+scan',
	'+unlink', '+ping', '+info', '+type', '+pttl', '+memory|usage');
$redis->cmd('ACL', 'SETUSER', 'tc_ops', @acl);

my $pwfile = "$PostgreSQL::Test::Utils::tmp_check/toolbox_redis_password";
sub write_password
{
	my ($text) = @_;
	open my $fh, '>', $pwfile or die "cannot write $pwfile: $!";
	print $fh "$text\n";
	close $fh;
	chmod 0600, $pwfile or die "chmod $pwfile: $!";
	return;
}
write_password($password);

my $node = tc_node(
	'toolbox',
	redis_port => $redis->port,
	settings => {
		'tenant_cache.redis_username' => 'tc_ops',
		'tenant_cache.redis_password_file' => $pwfile,
		'tenant_cache.poll_interval_ms' => 200,
		'tenant_cache.max_retry_interval_ms' => $max_retry_ms,
		'tenant_cache.command_timeout_ms' => 2000,
		'tenant_cache.health_max_queue_age_ms' => 2000,
	});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
SELECT tenant_cache.register_dependency('People',
         ARRAY['dropdown:people', 'dashboard:metrics', 'attendance:summary']);
SELECT tenant_cache.register_dependency('Asset',
         ARRAY['dropdown:asset', 'dashboard:metrics', 'asset:status']);
CREATE TABLE people_people (id serial PRIMARY KEY, tenant_id text, client_id text,
                            bu_id text, name text);
CREATE TABLE activity_asset (id serial PRIMARY KEY, tenant_id text, client_id text,
                             bu_id text);
SELECT tenant_cache.watch_table('people_people', 'People', 'tenant_id', 'client_id', 'bu_id');
SELECT tenant_cache.watch_table('activity_asset', 'Asset', 'tenant_id', 'client_id', 'bu_id');
});

# Everything the toolbox printed, checked for the password at the end.
my $seen = '';

sub sql
{
	my ($query) = @_;
	my $out = $node->safe_psql('postgres', $query);
	$seen .= "$out\n";
	return $out;
}

# psql output and errors (stderr) of a query that may fail.
sub sql_err
{
	my ($query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $query);
	$seen .= "$out\n$err\n";
	return ($rc, $out, $err);
}

sub stats_of
{
	my ($expr) = @_;
	return sql("SELECT $expr FROM tenant_cache.stats");
}

sub health
{
	return split /\|/, sql('SELECT status, message FROM tenant_cache.health()'), 2;
}

sub wait_drained
{
	return wait_until(sub { queue_count($node) == 0 }, 15);
}

my @tenant1 = map { "tenant:1:client:5:bu:6:$_" }
  qw(dropdown:people:all dashboard:metrics attendance:summary:2024);
my @tenant2 = map { "tenant:2:client:5:bu:6:$_" }
  qw(dropdown:people:all dashboard:metrics attendance:summary:2024);
my @unrelated = ('tenant:1:client:5:bu:6:asset:status:x', 'session:abc');

ok(wait_drained(), 'worker is running and the queue is empty');
ok(defined wait_until(sub { stats_of('redis_connected') eq 't' }, 10),
	'stats: the worker is connected to Redis');

# ---------------------------------------------------------------------
# 1. Counters move with the worker's work; the lag is commit-to-applied.
# ---------------------------------------------------------------------
sql('SELECT tenant_cache.stats_reset()');
$redis->set_keys(@tenant1, @tenant2, @unrelated);
my $t0 = time();
sql(q{INSERT INTO people_people (tenant_id, client_id, bu_id, name) VALUES ('1', '5', '6', 'ann')});
my $elapsed = wait_until(sub { stats_of('globs_applied') == 3 }, 15, $t0);
ok(defined $elapsed, 'stats: 3 globs applied for one People write');
is($redis->count_existing(@tenant1), 0, "tenant 1's keys are gone");
is($redis->count_existing(@tenant2, @unrelated), 5, 'the other keys remain');
my ($queued, $applied, $deleted, $passes, $errors, $samples, $last_lag, $p50,
	$p99, $state, $connected, $success)
  = split /\|/,
  stats_of(q{invalidations_queued, globs_applied, keys_deleted, scan_passes,
         redis_errors, lag_samples, last_lag_ms, lag_p50_ms, lag_p99_ms,
         worker_state, redis_connected, last_success_at IS NOT NULL});
is($queued, 3, 'stats: invalidations_queued = 3');
is($deleted, 3, 'stats: keys_deleted = 3 (exactly the keys removed)');
is($passes, 1, 'stats: one merged SCAN pass for the three globs of the batch');
is($errors, 0, 'stats: no Redis error');
is($samples, 3, 'stats: 3 lag samples');
cmp_ok($last_lag, '>', 0, 'stats: last lag is positive');
cmp_ok($last_lag, '<=', $elapsed * 1000,
	sprintf('stats: last lag %.1f ms is within the %.1f ms the test measured from before the commit',
		$last_lag, $elapsed * 1000));
cmp_ok($p50, '<=', $p99, 'stats: p50 <= p99');
cmp_ok($p99, '<=', $elapsed * 1000, 'stats: p99 within the measured time');
is($connected, 't', 'stats: redis_connected');
is($success, 't', 'stats: last_success_at set');
note sprintf('commit-to-applied lag: last %.2f ms, p50 %.2f ms, p99 %.2f ms',
	$last_lag, $p50, $p99);

# ---------------------------------------------------------------------
# 2. pattern_stats: per model and pattern; ad-hoc patterns as globbed.
# ---------------------------------------------------------------------
sql(q{SELECT tenant_cache.invalidate_pattern('reports', '1')});
ok(defined wait_until(sub { stats_of('globs_applied') == 4 }, 15),
	'ad-hoc invalidation applied');
is( sql(q{SELECT model || ' ' || pattern || ' ' || queued || ' ' || applied || ' ' ||
                 keys_deleted || ' ' || (last_applied IS NOT NULL)
          FROM tenant_cache.pattern_stats WHERE model IS NOT NULL ORDER BY model, pattern}),
	join("\n",
		'Asset asset:status 0 0 0 false',
		'Asset dashboard:metrics 1 1 1 true',
		'Asset dropdown:asset 0 0 0 false',
		'People attendance:summary 1 1 1 true',
		'People dashboard:metrics 1 1 1 true',
		'People dropdown:people 1 1 1 true'),
	'pattern_stats: each of People\'s patterns queued, applied, one key each; a shared pattern shows on both models'
);
is(sql(q{SELECT pattern || ' ' || applied FROM tenant_cache.pattern_stats WHERE model IS NULL}),
	'reports* 1', 'pattern_stats: an invalidate_pattern() glob has its own row');

# ---------------------------------------------------------------------
# 3. health(): healthy.
# ---------------------------------------------------------------------
my ($status, $message) = health();
is($status, 'healthy', 'health: healthy');
like($message, qr/^worker pid \d+ is idle; Redis at 127\.0\.0\.1:\d+ answers; 0 queue entries waiting$/,
	'health: the message names the worker and Redis');

# ---------------------------------------------------------------------
# 4. explore() and count_keys(): exactly the keys invalidate_pattern would clear.
# ---------------------------------------------------------------------
$redis->flushall;
$redis->set_keys(
	{
		'tenant:1:client:5:bu:6:dashboard:metrics' => 'small',
		'tenant:1:client:7:bu:8:dashboard:metrics:x' => 'x' x 5000,
		'tenant:2:client:5:bu:6:dashboard:metrics' => 'other tenant',
		'tenant:10:client:5:bu:6:dashboard:metrics' => 'tenant ten',
		'tenant:1:client:5:bu:6:dropdown:people' => 'other pattern',
		'dashboard:metrics' => 'outside key_format',
	});
$redis->cmd('EXPIRE', 'tenant:1:client:5:bu:6:dashboard:metrics', 900);
$redis->cmd('HSET', 'tenant:1:client:5:bu:6:dashboard:metrics:h', 'f', 'v');
my $dbsize = $redis->dbsize;

my @rows = split /\n/,
  sql(q{SELECT key, type, ttl IS NULL, coalesce(extract(epoch FROM ttl), -1), memory_bytes
        FROM tenant_cache.explore('dashboard:metrics', '1')});
is(join(',', map { (split /\|/)[0] } @rows),
	'tenant:1:client:5:bu:6:dashboard:metrics,tenant:1:client:5:bu:6:dashboard:metrics:h,tenant:1:client:7:bu:8:dashboard:metrics:x',
	'explore: tenant 1\'s dashboard:metrics keys, sorted, no other tenant\'s (not even tenant 10)');
my %r = map { my @f = split /\|/; $f[0] => \@f } @rows;
is($r{'tenant:1:client:5:bu:6:dashboard:metrics:h'}[1], 'hash', 'explore: type of a hash');
is($r{'tenant:1:client:5:bu:6:dashboard:metrics'}[1], 'string', 'explore: type of a string');
my $ttl = $r{'tenant:1:client:5:bu:6:dashboard:metrics'}[3];
ok($ttl > 890 && $ttl <= 900, "explore: TTL of the key with EXPIRE 900 is $ttl s");
is($r{'tenant:1:client:7:bu:8:dashboard:metrics:x'}[2], 't', 'explore: no TTL is NULL');
is($r{'tenant:1:client:7:bu:8:dashboard:metrics:x'}[4],
	$redis->cmd('MEMORY', 'USAGE', 'tenant:1:client:7:bu:8:dashboard:metrics:x'),
	'explore: memory_bytes is Redis\' MEMORY USAGE');
cmp_ok($r{'tenant:1:client:7:bu:8:dashboard:metrics:x'}[4], '>', 5000,
	'explore: ... which counts the 5 kB value');

my ($rc, $out, $err) = sql_err(
	q{SELECT count(*) FROM tenant_cache.explore('dashboard:metrics', max_keys => 2)});
is($out, '2', 'explore: max_keys bounds the rows');
like($err, qr/NOTICE:  explore\(\) stopped at max_keys \(2\): more keys may match "tenant:\*:client:\*:bu:\*:dashboard:metrics\*"/,
	'explore: a NOTICE says the list stopped at max_keys');
($rc, $out, $err) = sql_err(
	q{SELECT count(*) FROM tenant_cache.explore('dashboard:metrics', max_keys => 100)});
is($out, '5', 'explore: every tenant\'s keys with tenant_id NULL');
unlike($err, qr/NOTICE/, 'explore: no NOTICE when the walk completed');
is(sql(q{SELECT count(*) FROM tenant_cache.explore('dashboard:metrics', '1', client_id => '7')}),
	'1', 'explore: client_id narrows like invalidate_pattern');

is(sql(q{SELECT glob = tenant_cache.glob_for('dashboard:metrics', '1') AND keys = 3 AND complete
         FROM tenant_cache.count_keys('dashboard:metrics', '1')}),
	't', 'count_keys: 3 keys for tenant 1, complete, with the glob invalidate_pattern builds');
is(sql(q{SELECT keys FROM tenant_cache.count_keys('dashboard:metrics')}), '5',
	'count_keys: 5 for every tenant');
is($redis->dbsize, $dbsize, 'explore and count_keys cleared nothing');

# The time limit bounds a walk, and count_keys says it is incomplete.
$redis->set_keys(map { "tenant:3:client:1:bu:1:bulk:$_" } 1 .. 3000);
$node->append_conf('postgresql.conf',
	"tenant_cache.toolbox_time_limit_ms = 1\ntenant_cache.scan_count = 5\n");
$node->reload;
ok(defined wait_until(sub { sql('SHOW tenant_cache.toolbox_time_limit_ms') eq '1ms' }, 10),
	'time limit lowered');
my ($keys, $complete) = split /\|/,
  sql(q{SELECT keys, complete FROM tenant_cache.count_keys('bulk', '3')});
is($complete, 'f', "count_keys: incomplete after the time limit ($keys of 3000 keys seen)");
cmp_ok($keys, '<', 3000, 'count_keys: ... with a partial count');
($rc, $out, $err) = sql_err(q{SELECT count(*) FROM tenant_cache.explore('bulk', '3', 100000)});
like($err, qr/explore\(\) stopped after tenant_cache\.toolbox_time_limit_ms \(1 ms\) before SCAN finished/,
	"explore: a NOTICE says the time limit stopped it ($out keys listed)");
$node->append_conf('postgresql.conf',
	"tenant_cache.toolbox_time_limit_ms = 60000\ntenant_cache.scan_count = 1000\n");
$node->reload;
ok(defined wait_until(sub { sql('SHOW tenant_cache.toolbox_time_limit_ms') eq '1min' }, 10),
	'time limit raised');
is(sql(q{SELECT keys || ' ' || complete FROM tenant_cache.count_keys('bulk', '3')}),
	'3000 true', 'count_keys: all 3000 keys with time enough');
$redis->flushall;

# ---------------------------------------------------------------------
# 5. memory_by_pattern(): counts per pattern, MEMORY USAGE summed.
# ---------------------------------------------------------------------
my %by_pattern = (
	'dropdown:people' => [ map { "tenant:$_:client:1:bu:1:dropdown:people:all" } 1 .. 4 ],
	'dashboard:metrics' => [ map { "tenant:$_:client:1:bu:1:dashboard:metrics" } 1 .. 3 ],
	'asset:status' => ['tenant:9:client:2:bu:2:asset:status:7'],
);
my %values;
foreach my $p (keys %by_pattern)
{
	my $i = 0;
	$values{$_} = 'v' x (100 * ++$i) foreach @{ $by_pattern{$p} };
}
$redis->set_keys({ %values, 'session:xyz' => 'not ours' });
my %memory = map { $_ => $redis->cmd('MEMORY', 'USAGE', $_) } keys %values;
my %expect;
foreach my $p (keys %by_pattern)
{
	my $sum = 0;
	$sum += $memory{$_} foreach @{ $by_pattern{$p} };
	$expect{$p} = $sum;
}
my %got = map { my @f = split /\|/; $f[0] => [ @f[ 1 .. $#f ] ] } split /\n/,
  sql(q{SELECT pattern, models, keys, sampled, sampled_bytes, estimated_bytes, complete
        FROM tenant_cache.memory_by_pattern()});
is_deeply(
	[ map { "$_ $got{$_}[1] $got{$_}[2] $got{$_}[4] $got{$_}[5]" } sort keys %got ],
	[
		'asset:status 1 1 ' . $expect{'asset:status'} . ' t',
		'attendance:summary 0 0 0 t',
		'dashboard:metrics 3 3 ' . $expect{'dashboard:metrics'} . ' t',
		'dropdown:asset 0 0 0 t',
		'dropdown:people 4 4 ' . $expect{'dropdown:people'} . ' t',
	],
	'memory_by_pattern: keys and bytes per pattern equal MEMORY USAGE summed by the test');
is($got{'dashboard:metrics'}[0], '{Asset,People}', 'memory_by_pattern: the models of a shared pattern');
my ($sampled, $sbytes, $est) = split /\|/,
  sql(q{SELECT sampled, sampled_bytes, estimated_bytes FROM tenant_cache.memory_by_pattern(1)
        WHERE pattern = 'dropdown:people'});
is($sampled, 1, 'memory_by_pattern(1): one key sampled');
is($est, $sbytes * 4, 'memory_by_pattern(1): estimate = 4 keys x the sample');

# ---------------------------------------------------------------------
# 6. redis_info(): INFO's figures.
# ---------------------------------------------------------------------
$redis->cmd('GET', 'session:xyz');
$redis->cmd('GET', 'no:such:key');
my ($version, $clients, $used, $hits, $misses, $ratio, $evicted, $db_keys) =
  split /\|/,
  sql(q{SELECT redis_version, connected_clients, used_memory, keyspace_hits,
               keyspace_misses, hit_ratio, evicted_keys, db_keys
        FROM tenant_cache.redis_info()});
my ($info_version) = $redis->cmd('INFO', 'server') =~ /redis_version:(\S+)/;
is($version, $info_version, "redis_info: version $version");
cmp_ok($clients, '>=', 2, 'redis_info: connected clients counts the worker and the toolbox');
cmp_ok($used, '>', 0, 'redis_info: used memory');
cmp_ok($hits, '>=', 1, 'redis_info: keyspace hits');
cmp_ok($misses, '>=', 1, 'redis_info: keyspace misses');
ok(abs($ratio - $hits / ($hits + $misses)) < 1e-9, "redis_info: hit ratio $ratio");
is($db_keys, $redis->dbsize, 'redis_info: db_keys is DBSIZE');
is($evicted, 0, 'redis_info: nothing evicted yet');
$redis->cmd('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
$redis->cmd('CONFIG', 'SET', 'maxmemory', $redis->cmd('INFO', 'memory') =~ /used_memory:(\d+)/ ? $1 + 200_000 : 0);
$redis->set_keys({ map { ("evict:$_" => 'e' x 1000) } 1 .. 1000 });
cmp_ok(sql('SELECT evicted_keys FROM tenant_cache.redis_info()'), '>', 0,
	'redis_info: evicted keys once maxmemory is reached');
$redis->cmd('CONFIG', 'SET', 'maxmemory', '0');
$redis->flushall;

# ---------------------------------------------------------------------
# 7. invalidate_all(): every key of key_format, every tenant, nothing else.
# ---------------------------------------------------------------------
$redis->set_keys(@tenant1, @tenant2, 'tenant:3:client:x:bu:y:anything',
	'session:abc', 'other:tenant:1:client:5:bu:6:x');
($rc, $out, $err) = sql_err('SELECT tenant_cache.invalidate_all(false)');
like($err, qr/invalidate_all\(\) needs confirm => true/, 'invalidate_all: refuses without confirm');
is(sql('SELECT tenant_cache.invalidate_all(confirm => true)'), 'tenant:*:client:*:bu:*:*',
	'invalidate_all: queues the glob of every key of key_format');
ok(defined wait_until(sub { $redis->dbsize == 2 }, 15), 'invalidate_all: cleared after commit');
is_deeply([ $redis->keys ], [ 'other:tenant:1:client:5:bu:6:x', 'session:abc' ],
	'invalidate_all: keys outside key_format remain');
wait_drained();
is(sql(q{SELECT applied FROM tenant_cache.pattern_stats WHERE model IS NULL AND pattern = '*'}),
	'1', 'pattern_stats: invalidate_all has its row');

# ---------------------------------------------------------------------
# 7b. Redis hung (SIGSTOP): bounded by the timeouts, and cancellable.
# ---------------------------------------------------------------------
$redis->pause;
my $t = time();
($rc, $out, $err) = sql_err(q{SELECT * FROM tenant_cache.count_keys('dashboard')});
my $took = time() - $t;
like($err, qr/could not reach Redis at 127\.0\.0\.1:\d+\nDETAIL:  timed out waiting for Redis/,
	'count_keys: a hung Redis is a timeout error');
cmp_ok($took, '<', 2 + 1 + 5, sprintf('... after %.1f s (connect 1 s + command 2 s timeouts)', $took));
$t = time();
($rc, $out, $err) = sql_err(
	q{SET statement_timeout = '300ms'; SELECT * FROM tenant_cache.explore('dashboard')});
$took = time() - $t;
like($err, qr/canceling statement due to statement timeout/,
	'explore: statement_timeout cancels a call waiting on a hung Redis');
cmp_ok($took, '<', 1.9, sprintf('... at once (%.2f s, before the 2 s command timeout)', $took));
($status, $message) = health();
like("$status $message", qr/^down .*Redis at 127\.0\.0\.1:\d+ is unreachable: timed out/,
	'health: down while Redis hangs');
$redis->resume;
ok(defined wait_until(sub { (health())[0] eq 'healthy' }, 15), 'health: healthy once Redis answers');

# ---------------------------------------------------------------------
# 8. Redis stopped: the connection error shows in stats and health.
# ---------------------------------------------------------------------
$errors = stats_of('redis_errors');
$redis->stop;
sql(q{INSERT INTO people_people (tenant_id, client_id, bu_id, name) VALUES ('1', '5', '6', 'bob')});
my $committed = time();
ok( defined wait_until(
		sub {
			stats_of(q{redis_errors > } . $errors
				  . q{ AND NOT redis_connected AND worker_state = 'retrying Redis'
                   AND last_error LIKE 'could not connect to Redis: Connection refused'})
			  eq 't';
		},
		15),
	'stats: Redis down shows as retrying, not connected, with the connection error');
cmp_ok(sql(q{SELECT count(DISTINCT glob) FROM tenant_cache.queue}),
	'>=', 3, 'while the invalidations stay queued');
($status, $message) = health();
is($status, 'down', 'health: down while Redis is stopped');
like($message, qr/Redis at 127\.0\.0\.1:\d+ is unreachable: could not connect to Redis: Connection refused/,
	'health: ... because Redis is unreachable');
($rc, $out, $err) = sql_err(q{SELECT * FROM tenant_cache.explore('dashboard', '1')});
like($err, qr/ERROR:  could not reach Redis at 127\.0\.0\.1:\d+\nDETAIL:  could not connect to Redis: Connection refused\./,
	'explore: a clear error while Redis is unreachable');
($rc, $out, $err) = sql_err(q{SELECT * FROM tenant_cache.redis_info()});
like($err, qr/ERROR:  could not reach Redis/, 'redis_info: the same error');
$node->safe_psql('postgres', 'SELECT pg_sleep(1.5)');
my $down_for = time() - $committed;
$applied = stats_of('globs_applied');
$redis->start;
$redis->cmd('ACL', 'SETUSER', 'tc_ops', @acl);
ok(defined wait_until(sub { stats_of('globs_applied') >= $applied + 3 }, $max_retry_ms / 1000 + 10),
	'the waiting globs are applied once Redis is back');
cmp_ok(stats_of('last_lag_ms'), '>=', $down_for * 1000,
	sprintf('stats: the lag covers the outage (>= %.0f ms)', $down_for * 1000));
ok(defined wait_until(sub { (health())[0] eq 'healthy' }, 10), 'health: healthy again');
is(stats_of('redis_connected'), 't', 'stats: connected again');

# ---------------------------------------------------------------------
# 9. Degraded: entries refused by Redis (NOPERM), and old.
# ---------------------------------------------------------------------
$redis->cmd('ACL', 'SETUSER', 'tc_ops', 'resetkeys', '~tenant:1:*');
$redis->set_keys(@tenant2);
sql(q{INSERT INTO people_people (tenant_id, client_id, bu_id, name) VALUES ('2', '5', '6', 'cat')});
ok( defined wait_until(
		sub {
			my ($s, $m) = health();
			$s eq 'degraded'
			  && $m =~ /3 queue entries failed and wait for a retry; last error: Redis UNLINK failed: NOPERM/
			  && $m =~ /the oldest of 3 queue entries has waited \d+\.\d s \(tenant_cache\.health_max_queue_age_ms is 2000 ms\)/;
		},
		15),
	'health: degraded by refused and old entries, with both reasons');
like(stats_of('last_error'), qr/NOPERM/, 'stats: last_error is the refusal');
$redis->cmd('ACL', 'SETUSER', 'tc_ops', 'resetkeys', '~tenant:*');
ok(defined wait_until(sub { wait_drained() && (health())[0] eq 'healthy' }, 15),
	'health: healthy once allowed again');
is($redis->count_existing(@tenant2), 0, "tenant 2's keys are gone then");

# ---------------------------------------------------------------------
# 10. Worker terminated: down meanwhile; counters survive the restart.
# ---------------------------------------------------------------------
my ($pid, $starts, $kept) = split /\|/,
  stats_of(q{worker_pid, worker_starts, globs_applied || ' ' || keys_deleted || ' ' ||
         scan_passes || ' ' || redis_errors || ' ' || lag_samples || ' ' || invalidations_queued});
sql("SELECT pg_terminate_backend($pid)");
ok( defined wait_until(
		sub {
			sql(q{SELECT s.worker_state || '|' || (s.worker_pid IS NULL) || '|' || h.status || '|' || h.message
                  FROM tenant_cache.stats s, tenant_cache.health() h})
			  =~ /^not running\|true\|down\|the worker is not running$/;
		},
		10),
	'stats and health: the worker is not running (before its restart)');
ok( defined wait_until(
		sub { my $p = stats_of('worker_pid'); $p ne '' && $p != $pid }, 15),
	'a new worker runs');
is(stats_of(q{globs_applied || ' ' || keys_deleted || ' ' || scan_passes || ' ' || redis_errors
          || ' ' || lag_samples || ' ' || invalidations_queued}),
	$kept, "stats: counters survived the worker's restart ($kept)");
is(stats_of('worker_starts'), $starts + 1, 'stats: worker_starts counts the restart');
ok(defined wait_until(sub { (health())[0] eq 'healthy' }, 15), 'health: healthy with the new worker');
$applied = stats_of('globs_applied');
sql(q{INSERT INTO activity_asset (tenant_id, client_id, bu_id) VALUES ('4', '1', '1')});
ok(defined wait_until(sub { stats_of('globs_applied') == $applied + 3 }, 15),
	'the new worker adds to the kept counters');

# ---------------------------------------------------------------------
# 11. stats_reset().
# ---------------------------------------------------------------------
my $reset_before = stats_of('stats_reset');
sql('SELECT tenant_cache.stats_reset()');
is(stats_of(q{invalidations_queued || ' ' || globs_applied || ' ' || keys_deleted || ' ' ||
          scan_passes || ' ' || redis_errors || ' ' || lag_samples || ' ' ||
          (last_lag_ms IS NULL) || ' ' || (last_error IS NULL) || ' ' ||
          (stats_reset > '} . $reset_before . q{') || ' ' || (worker_pid IS NOT NULL)}),
	'0 0 0 0 0 0 true true true true',
	'stats_reset: counters zeroed, reset time moved, the worker still shown');
is(sql(q{SELECT count(*) FROM tenant_cache.pattern_stats WHERE queued + applied > 0 OR model IS NULL}),
	'0', 'stats_reset: pattern counters zeroed too');

# ---------------------------------------------------------------------
# 11b. Another key_format, {pattern} in the middle: attribution and globs.
# ---------------------------------------------------------------------
$node->append_conf('postgresql.conf',
	"tenant_cache.key_format = 'app:{pattern}:t:{tenant}:c:{client}:b:{bu}:'\n");
$node->reload;
ok( defined wait_until(
		sub { sql('SHOW tenant_cache.key_format') =~ /^app:/ }, 10),
	'key_format changed');
$redis->cmd('ACL', 'SETUSER', 'tc_ops', '~app:*');
$redis->set_keys('app:dropdown:people:all:t:7:c:1:b:1:', 'app:dropdown:people:all:t:8:c:1:b:1:',
	'app:dashboard:metrics:t:7:c:1:b:1:');
is(sql(q{SELECT glob || ' ' || keys FROM tenant_cache.count_keys('dropdown:people', '7')}),
	'app:dropdown:people*:t:7:c:*:b:*: 1', 'count_keys: the glob follows key_format');
$applied = stats_of('globs_applied');
# The worker reloads its settings at its next wake-up: wait for a full pass.
$node->safe_psql('postgres', 'SELECT pg_sleep(0.5)');
sql(q{INSERT INTO people_people (tenant_id, client_id, bu_id, name) VALUES ('7', '1', '1', 'eve')});
ok(defined wait_until(sub { stats_of('globs_applied') == $applied + 3 }, 15),
	'the write is applied with the new key_format');
is_deeply([ $redis->keys('app:*') ], ['app:dropdown:people:all:t:8:c:1:b:1:'],
	'tenant 7\'s keys of the new format are gone, tenant 8\'s remain');
is(sql(q{SELECT string_agg(pattern || ' ' || applied, ', ' ORDER BY pattern)
         FROM tenant_cache.pattern_stats WHERE model = 'People'}),
	'attendance:summary 1, dashboard:metrics 1, dropdown:people 1',
	'pattern_stats: globs of the new format are attributed to their patterns');
$node->append_conf('postgresql.conf',
	"tenant_cache.key_format = 'tenant:{tenant}:client:{client}:bu:{bu}:{pattern}'\n");
$node->reload;
ok( defined wait_until(
		sub { sql('SHOW tenant_cache.key_format') =~ /^tenant:/ }, 10),
	'key_format back to the default');
$node->safe_psql('postgres', 'SELECT pg_sleep(0.5)');

# ---------------------------------------------------------------------
# 12. dependency_graph() renders (when Graphviz is installed).
# ---------------------------------------------------------------------
SKIP:
{
	skip 'Graphviz dot is not installed', 1
	  unless system('sh', '-c', 'command -v dot >/dev/null') == 0;
	my $dot = sql('SELECT tenant_cache.dependency_graph()');
	my $svg = '';
	IPC::Run::run([ 'dot', '-Tsvg' ], '<', \$dot, '>', \$svg);
	like($svg, qr/<svg.*people_people.*dropdown:people/s, 'dependency_graph: dot renders it');
}

# ---------------------------------------------------------------------
# 13. A wrong password: clear errors, and the password nowhere.
# ---------------------------------------------------------------------
write_password($wrong_password);
($rc, $out, $err) = sql_err(q{SELECT * FROM tenant_cache.count_keys('dashboard')});
like($err, qr/could not reach Redis.*\nDETAIL:  Redis AUTH failed: WRONGPASS/,
	'count_keys: a wrong password is reported as an AUTH failure');
$redis->cmd('CLIENT', 'KILL', 'USER', 'tc_ops');
sql(q{INSERT INTO people_people (tenant_id, client_id, bu_id, name) VALUES ('1', '5', '6', 'dan')});
ok(defined wait_until(sub { stats_of('last_error') =~ /WRONGPASS/ }, 15),
	'stats: the worker\'s AUTH failure is its last error');
($status, $message) = health();
like("$status $message", qr/^down .*Redis AUTH failed: WRONGPASS/, 'health: down, AUTH failed');
write_password($password);
ok(wait_drained(), 'with the right password the queue drains');
sql(q{SELECT * FROM tenant_cache.stats});
sql(q{SELECT * FROM tenant_cache.pattern_stats});
sql(q{SELECT * FROM tenant_cache.health()});
sql(q{SELECT * FROM tenant_cache.redis_info()});
my $log = slurp_file($node->logfile);
foreach my $secret ($password, $wrong_password)
{
	unlike($seen, qr/\Q$secret\E/, 'no toolbox output or error shows the password');
	unlike($log, qr/\Q$secret\E/, 'the server log does not show it');
}

# ---------------------------------------------------------------------
# 14. A clean restart keeps the counters (written to pg_stat at shutdown,
# read back at start); a crash (immediate stop) starts them from zero.
# ---------------------------------------------------------------------
{
	my $counters = q{invalidations_queued || ' ' || globs_applied || ' ' ||
		keys_deleted || ' ' || scan_passes || ' ' || redis_errors || ' ' ||
		lag_samples || ' ' || lag_p99_ms || ' ' || stats_reset};
	my $patterns = q{SELECT string_agg(coalesce(model, '-') || ' ' || pattern || ' ' ||
		queued || ' ' || applied || ' ' || keys_deleted, ', ' ORDER BY pattern, model)
		FROM tenant_cache.pattern_stats};
	ok(wait_drained(), 'restart: nothing left to apply');
	cmp_ok(stats_of('globs_applied'), '>', 0, 'restart: the worker\'s work was counted');
	my $before = stats_of($counters);
	my $patterns_before = sql($patterns);
	my $starts = stats_of('worker_starts');
	$node->restart;
	is(stats_of($counters), $before, 'restart: counters and lag samples kept');
	is(sql($patterns), $patterns_before, 'restart: pattern counters kept');
	ok(defined wait_until(sub { stats_of('worker_starts') == $starts + 1 }, 15),
		'restart: the new worker adds one start to the kept count');
	ok(!-e $node->data_dir . '/pg_stat/tenant_cache.stat',
		'restart: the file is removed once read back');
	# A crash (a process killed: the postmaster reinitialises shared memory)
	# starts them from zero; the worker may then apply again what its last
	# batches did (their asynchronous commits are lost), counted anew.
	my $applied_kept = stats_of('globs_applied');
	my $reset_kept = stats_of('stats_reset');
	$node->append_conf('postgresql.conf', "restart_after_crash = on\n");
	$node->reload;
	ok($node->poll_query_until('postgres', 'SHOW restart_after_crash', 'on'),
		'crash: the server will restart after it');
	my $pid = stats_of('worker_pid');
	kill 'KILL', $pid;
	ok( $node->poll_query_until('postgres',
			"SELECT worker_pid IS NOT NULL AND worker_pid <> $pid FROM tenant_cache.stats"),
		'crash: the server restarted and a new worker runs');
	is(stats_of(qq{(stats_reset > '$reset_kept') || ' ' || (globs_applied < $applied_kept)}),
		'true true', 'crash: the counters start from zero (reset at the restart)');
}

$node->stop;
$redis->stop;
done_testing();
