
# Copyright (c) tenant_cache authors

# Redis outage: while Redis is down, writes of two tenants commit at once and
# their invalidations wait in tenant_cache.queue; the worker retries with
# backoff capped at max_retry_interval_ms, warns once rather than at every
# retry, and once Redis is back (with the keys it had) it clears exactly the
# keys of those writes.  Then a reload with a new redis_port moves the worker
# to another Redis.

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

my $max_retry_ms = 2000;

my $redis = TenantCacheTest::Redis->new(name => 'a');
my $node = tc_node(
	'outage',
	redis_port => $redis->port,
	settings => {
		'tenant_cache.poll_interval_ms' => 1000,
		'tenant_cache.max_retry_interval_ms' => $max_retry_ms,
		'tenant_cache.connect_timeout_ms' => 1000,
		'tenant_cache.command_timeout_ms' => 2000,
		# The queue of the outage takes several batches.
		'tenant_cache.batch_size' => 3,
		# The worker's retries after the first are logged at DEBUG1: keep
		# them, to count them.
		'log_min_messages' => 'debug1',
	});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id int PRIMARY KEY, tenant_id int, client_id int,
                     bu_id int, name text);
CREATE TABLE asset (id int PRIMARY KEY, tenant_id int, client_id int,
                    bu_id int, status text);
SELECT tenant_cache.register_dependency('People',
    ARRAY['dropdown:people', 'dashboard:metrics'], 'tenant');
SELECT tenant_cache.register_dependency('Asset', ARRAY['dropdown:asset'], 'bu');
SELECT tenant_cache.watch_table('people', 'People', 'tenant_id', 'client_id', 'bu_id');
SELECT tenant_cache.watch_table('asset', 'Asset', 'tenant_id', 'client_id', 'bu_id');
INSERT INTO people VALUES (1, 1, 2, 3, 'ann'), (2, 2, 2, 3, 'bob'),
                          (3, 3, 2, 3, 'cat');
INSERT INTO asset VALUES (1, 1, 2, 3, 'up'), (2, 1, 2, 9, 'up');
});
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'queue drained after the setup: the worker is connected');
$node->wait_for_log(qr/tenant_cache worker connected to Redis/);

# The worker waits on a Redis socket through a wait set (an epoll
# descriptor) kept with the connection: a lost or replaced connection must
# not leave one behind.
sub worker_epoll_fds
{
	my $dir = '/proc/' . worker_pid($node) . '/fd';
	opendir(my $dh, $dir) or die "cannot read $dir: $!";
	my $n = grep { (readlink("$dir/$_") // '') eq 'anon_inode:[eventpoll]' }
	  readdir($dh);
	closedir($dh);
	return $n;
}
my $epoll_fds = worker_epoll_fds();
note "the connected worker has $epoll_fds epoll descriptors";

my @affected = qw(
  tenant:1:client:2:bu:3:dropdown:people:all
  tenant:1:client:2:bu:3:dashboard:metrics:today
  tenant:2:client:2:bu:3:dropdown:people:all
  tenant:2:client:2:bu:3:dashboard:metrics:today
  tenant:1:client:2:bu:3:dropdown:asset:all
  tenant:2:client:4:bu:5:report:daily:x
);
my @unaffected = qw(
  tenant:3:client:2:bu:3:dropdown:people:all
  tenant:1:client:2:bu:9:dropdown:asset:all
  tenant:1:client:2:bu:3:report:daily:x
  session:abc
);
$redis->set_keys(@affected, @unaffected);

# Down, keeping its keys for the restart.
$redis->stop(save => 1);
ok(!defined $redis->try_cmd('PING'), 'Redis is down');
my $log_offset = -s $node->logfile;

subtest 'writes commit at once while Redis is down' => sub {
	my $s = $node->background_psql('postgres');
	my @commit_ms;
	foreach my $write (
		q{UPDATE people SET name = 'ann2' WHERE tenant_id = 1},
		q{INSERT INTO people VALUES (20, 2, 2, 3, 'dan')},
		q{UPDATE asset SET status = 'down' WHERE id = 1},
		q{SELECT tenant_cache.invalidate_pattern('report:daily', '2')},
		q{DELETE FROM people WHERE id = 20})
	{
		$s->query_safe('BEGIN');
		$s->query_safe($write);
		push @commit_ms, 1000 * psql_timed($s, 'COMMIT');
		# Let the worker meet the outage between the transactions.
		usleep(200_000);
	}
	$s->quit;
	note 'COMMIT times during the outage (ms): '
	  . join(', ', map { sprintf '%.1f', $_ } @commit_ms);
	my $slowest = (sort { $b <=> $a } @commit_ms)[0];
	cmp_ok($slowest, '<', 2000, 'no COMMIT waits for Redis');
	is($node->safe_psql('postgres', 'SELECT count(*) FROM people WHERE id = 20'),
		'0', 'the writes took effect');
};

subtest 'the invalidations wait in the queue' => sub {
	my @expected = sort qw(
	  tenant:1:client:*:bu:*:dropdown:people*
	  tenant:1:client:*:bu:*:dashboard:metrics*
	  tenant:2:client:*:bu:*:dropdown:people*
	  tenant:2:client:*:bu:*:dashboard:metrics*
	  tenant:1:client:2:bu:3:dropdown:asset*
	  tenant:2:client:*:bu:*:report:daily*
	);
	my @rows = queue_rows($node);
	cmp_ok(scalar(@rows), '>=', 5, 'at least one queue row per transaction');
	my %distinct = map { $_->{glob} => 1 } @rows;
	is_deeply([ sort keys %distinct ], \@expected,
		'the queue holds the globs of every committed write');

	my $failed;
	my $secs = wait_until(
		sub {
			($failed) = grep { $_->{attempts} > 0 && defined $_->{last_error} }
			  queue_rows($node);
			return defined $failed;
		},
		30);
	ok(defined $secs, 'a failed attempt is recorded in the queue');
	note "failed row: attempts=$failed->{attempts}, "
	  . "last_error=$failed->{last_error}, "
	  . "next_attempt_at=$failed->{next_attempt_at}"
	  if $failed;
	note 'queue during the outage: '
	  . join('; ',
		map { "$_->{glob} attempts=$_->{attempts}" } queue_rows($node));
};

subtest 'retries back off to max_retry_interval_ms and warn once' => sub {
	my $port = $redis->port;
	# Every attempt on the stopped server is refused, and logged (the first
	# as a WARNING, the others at DEBUG1).
	my $attempt_re =
	  qr/^(\S+ (\d\d):(\d\d):(\d\d\.\d+) \S+) .*tenant_cache worker .*Redis.*:$port\b.*Connection refused/m;
	my @stamps;
	my $ok = wait_until(
		sub {
			my $log = slurp_file($node->logfile, $log_offset);
			@stamps = ();
			while ($log =~ /$attempt_re/g)
			{
				push @stamps, $2 * 3600 + $3 * 60 + $4;
			}
			return @stamps >= 7;
		},
		60);
	ok(defined $ok, 'the worker keeps trying to connect (7 attempts seen)');
	my @gaps = map { $stamps[$_] - $stamps[ $_ - 1 ] } 1 .. $#stamps;
	$_ += 86400 foreach grep { $_ < 0 } @gaps;
	note 'seconds between connection attempts: '
	  . join(', ', map { sprintf '%.3f', $_ } @gaps);
	my $widest = (sort { $b <=> $a } @gaps)[0] // 0;
	cmp_ok($widest, '<=', $max_retry_ms / 1000 + 1.5,
		'no wait between attempts exceeds max_retry_interval_ms (+1.5 s slack)');
	cmp_ok($gaps[-1] // 0, '>=', $max_retry_ms / 1000 / 2,
		'the attempts back off (last wait at least half the cap)');

	my $log = slurp_file($node->logfile, $log_offset);
	my @warnings = $log =~ /^.*WARNING:  tenant_cache worker .*Redis.*$/mg;
	note "worker warnings during the outage:\n" . join("\n", @warnings);
	cmp_ok(scalar(@warnings), '>=', 1, 'the outage is reported with a WARNING');
	cmp_ok(scalar(@warnings), '<=', 2,
		scalar(@stamps) . ' connection attempts, at most 2 WARNINGs');
};

subtest 'Redis back: the queued invalidations are applied' => sub {
	my $t0 = Time::HiRes::time();
	$redis->start;
	my $latency = wait_until(sub { $redis->count_existing(@affected) == 0 },
		60, $t0);
	ok(defined $latency, 'the keys of the writes made during the outage are cleared');
	note sprintf('keys gone %.3f s after Redis was started again', $latency // -1);
	cmp_ok($latency // 1e9, '<=', $max_retry_ms / 1000 + 2,
		'within max_retry_interval_ms + 2 s of the restart');
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'the queue is empty again');
	is_deeply([ $redis->keys ], [ sort @unaffected ],
		'every other key Redis kept over the restart is still there');
	ok(defined wait_until(sub { $redis->clients == 1 }, 30),
		'the worker is connected again');
	is(worker_epoll_fds(), $epoll_fds,
		'no wait set left behind by the lost connection and the attempts');
};

my $redis_b;
subtest 'reload with a new redis_port moves the worker to the new Redis' => sub {
	$redis_b = TenantCacheTest::Redis->new(name => 'b');
	my @keys = qw(tenant:1:client:2:bu:3:dropdown:people:all
	  tenant:1:client:2:bu:3:dashboard:metrics:today session:abc);
	$redis->flushall;
	$redis->set_keys(@keys);
	$redis_b->set_keys(@keys);

	ok(defined wait_until(sub { $redis->clients == 1 }, 30),
		'the worker is connected to the first Redis');
	$node->safe_psql('postgres',
		'ALTER SYSTEM SET tenant_cache.redis_port = ' . $redis_b->port);
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	my $secs = wait_until(
		sub { $redis_b->clients == 1 && $redis->clients == 0 }, 60);
	ok(defined $secs, 'the worker moved its connection to the new Redis');
	note sprintf('connection moved %.3f s after pg_reload_conf()', $secs // -1);

	my $t0 = Time::HiRes::time();
	$node->safe_psql('postgres',
		q{UPDATE people SET name = 'ann3' WHERE tenant_id = 1});
	my $latency = wait_until(
		sub { $redis_b->count_existing(@keys[ 0, 1 ]) == 0 }, 60, $t0);
	ok(defined $latency && $latency <= 1.0,
		'the keys are cleared in the new Redis within a second');
	note sprintf('new Redis: keys gone %.1f ms after the write was started',
		($latency // -1) * 1000);
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'queue drained');
	is_deeply([ $redis_b->keys ], ['session:abc'],
		'the new Redis keeps the other key');
	is_deeply([ $redis->keys ], [ sort @keys ],
		'the old Redis is no longer touched');
};

subtest 'reload with a new redis_db moves the worker to that database' => sub {
	my $db3 = $redis_b->db(3);
	my @keys = qw(tenant:1:client:2:bu:3:dropdown:people:all session:abc);
	$redis_b->flushall;
	$redis_b->set_keys(@keys);
	$db3->set_keys(@keys);

	$node->safe_psql('postgres', 'ALTER SYSTEM SET tenant_cache.redis_db = 3');
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	my $secs = wait_until(
		sub {
			my @c = $redis_b->clients;
			return @c == 1 && $c[0] =~ /\bdb=3\b/;
		},
		60);
	ok(defined $secs, 'the worker reconnected to database 3');

	my $t0 = Time::HiRes::time();
	$node->safe_psql('postgres',
		q{UPDATE people SET name = 'ann4' WHERE tenant_id = 1});
	my $latency = wait_until(sub { !$db3->exists($keys[0]) }, 60, $t0);
	ok(defined $latency && $latency <= 1.0,
		'the key is cleared in Redis database 3 within a second');
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'queue drained');
	is_deeply([ $db3->keys ], ['session:abc'], 'database 3 keeps the other key');
	is_deeply([ $redis_b->keys ], [ sort @keys ],
		'database 0 is no longer touched');
	is(worker_epoll_fds(), $epoll_fds,
		'no wait set left behind by the connections replaced on reload');
};

$node->stop;
$redis_b->stop;
$redis->stop;
done_testing();
