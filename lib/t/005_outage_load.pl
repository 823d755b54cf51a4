
# Copyright (c) tenant_cache authors

# Redis outage under write load.  The same workload (2,000 transactions of 5
# rows over 20 tenants, through one psql session) is written three times with
# Redis up and three times with Redis down:
#  - every commit succeeds while Redis is down, and the write rate does not
#    collapse (writers never contact Redis);
#  - the queue grows, holding every written glob once (a glob whose twin is
#    still waiting is not queued again, so the queue stays bounded);
#  - the worker backs off (a bounded number of connection attempts, commits
#    do not make it retry sooner), warns once rather than at every retry, and
#    stays the same process (no crash loop);
#  - once Redis is back with the keys it had, every key of the affected
#    tenants is gone within max_retry_interval_ms + 2 s, the queue is empty
#    and the keys of the other tenants are kept.

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

my $max_retry_ms = 2000;
my $n_tx = 2000;
my $rows_per_tx = 5;
my $n_tenants = 20;
my @patterns = ('dropdown:people', 'dashboard:metrics');

my $faults = 0;

my $redis = TenantCacheTest::Redis->new(name => 'load');
my $node = tc_node(
	'outage_load',
	redis_port => $redis->port,
	settings => {
		'tenant_cache.poll_interval_ms' => 1000,
		'tenant_cache.max_retry_interval_ms' => $max_retry_ms,
		'tenant_cache.connect_timeout_ms' => 1000,
		'tenant_cache.command_timeout_ms' => 2000,
		# The worker's retries after the first WARNING are logged at DEBUG1:
		# keep them, to count the connection attempts.
		'log_min_messages' => 'debug1',
	});

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id bigserial PRIMARY KEY, tenant_id int, client_id int,
                     bu_id int, name text);
SELECT tenant_cache.register_dependency('People',
    ARRAY['dropdown:people', 'dashboard:metrics'], 'tenant');
SELECT tenant_cache.watch_table('people', 'People', 'tenant_id', 'client_id', 'bu_id');
INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES (1, 1, 1, 'setup');
});
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'queue drained after the setup: the worker is connected');

sub glob_of
{
	my ($tenant, $pattern) = @_;
	return "tenant:$tenant:client:*:bu:*:$pattern*";
}

# The workload: transaction $i inserts 3 rows of tenant a and 2 of tenant b
# (a = b for every tenth transaction: one tenant, 5 rows).  Returns the
# script, the number of rows and the number of queue entries it must make
# (one per distinct glob per transaction).
sub workload
{
	my ($n, $tag) = @_;
	my ($sql, $rows, $entries) = ('', 0, 0);
	my %globs;
	for my $i (0 .. $n - 1)
	{
		my $a = 1 + $i % $n_tenants;
		my $b = 1 + ($i * 3) % $n_tenants;
		my @tenants = (($a) x 3, ($b) x 2);
		$sql .= 'INSERT INTO people (tenant_id, client_id, bu_id, name) VALUES '
		  . join(', ',
			map { sprintf("(%d, %d, %d, '%s-%d')", $tenants[$_], 1 + $_, 1 + $i % 3, $tag, $i) }
			  0 .. $#tenants)
		  . ";\n";
		$rows += @tenants;
		my %distinct = map { $_ => 1 } @tenants;
		$entries += keys(%distinct) * @patterns;
		foreach my $t (keys %distinct)
		{
			$globs{ glob_of($t, $_) } = 1 foreach @patterns;
		}
	}
	return ($sql, $rows, $entries, [ sort keys %globs ]);
}

# Run a script through one psql session; returns (exit code, seconds, stderr).
sub run_timed
{
	my ($sql) = @_;
	my $t0 = Time::HiRes::time();
	my ($rc, $out, $err) = $node->psql('postgres', $sql, on_error_stop => 1);
	return ($rc, Time::HiRes::time() - $t0, $err);
}

# Warm up the backend code paths, the catalog caches and the table.
{
	my ($sql) = workload(200, 'warm');
	my ($rc) = run_timed($sql);
	is($rc, 0, 'warm-up workload');
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'warm-up invalidations applied');
}

my ($up_rate, $down_rate);

# The workload is run $reps times in each state and the median rate kept, so
# that one hiccup of the machine (a checkpoint, another process) does not
# decide the figure.
my $reps = 3;
sub median { my @v = sort { $a <=> $b } @_; return $v[ int(@v / 2) ]; }

subtest 'write rate with Redis up' => sub {
	my ($sql, $rows) = workload($n_tx, 'up');
	my @rates;
	for my $rep (1 .. $reps)
	{
		my ($rc, $secs, $err) = run_timed($sql);
		is($rc, 0, "run $rep: $n_tx transactions of $rows_per_tx rows committed")
		  or diag $err;
		push @rates, $rows / $secs;
		note sprintf('Redis up, run %d: %d rows in %.3f s', $rep, $rows, $secs);
	}
	$up_rate = median(@rates);
	my $t0 = Time::HiRes::time();
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'the worker keeps up: the queue is drained');
	note sprintf('queue drained %.3f s after the workload ended',
		Time::HiRes::time() - $t0);
};

# The cache: for every tenant two clients/bus and two patterns, plus keys no
# write of the workload may clear.
my @affected;
foreach my $t (1 .. $n_tenants)
{
	foreach my $cb ([ 1, 1 ], [ 7, 3 ])
	{
		push @affected,
		  "tenant:$t:client:$cb->[0]:bu:$cb->[1]:dropdown:people:all",
		  "tenant:$t:client:$cb->[0]:bu:$cb->[1]:dashboard:metrics:today";
	}
}
my @unaffected = (
	(map { "tenant:$_:client:1:bu:1:dropdown:people:all" } 21 .. 25, 100, 200),
	'tenant:1:client:1:bu:1:report:daily:x',
	'tenant::client:1:bu:1:dropdown:people:all',
	'other:tenant:1:client:1:bu:1:dropdown:people:all',
	'session:abc');
$redis->set_keys(@affected, @unaffected);
is($redis->dbsize, @affected + @unaffected, 'cache seeded');

my $pid_before = worker_pid($node);
like($pid_before, qr/^\d+$/, 'a worker runs before the outage');

# Down, keeping its keys for the restart.
my $log_offset = -s $node->logfile;
my $t_down = Time::HiRes::time();
$redis->stop(save => 1);
$faults++;
ok(!defined $redis->try_cmd('PING'), 'Redis is down');

my ($down_entries, $down_globs);
subtest 'every commit succeeds while Redis is down' => sub {
	my ($sql, $rows, $entries, $globs) = workload($n_tx, 'down');
	($down_entries, $down_globs) = ($entries * $reps, $globs);
	my $before = $node->safe_psql('postgres', 'SELECT count(*) FROM people');
	my @rates;
	for my $rep (1 .. $reps)
	{
		my ($rc, $secs, $err) = run_timed($sql);
		is($rc, 0, "run $rep: $n_tx transactions committed with Redis down")
		  or diag $err;
		push @rates, $rows / $secs;
		note sprintf('Redis down, run %d: %d rows in %.3f s', $rep, $rows, $secs);
	}
	$down_rate = median(@rates);
	is($node->safe_psql('postgres', 'SELECT count(*) FROM people') - $before,
		$rows * $reps, 'all ' . $rows * $reps . ' rows are there');
};

my $ratio = $down_rate / $up_rate;
diag sprintf('write rate with Redis up: %.0f rows/s, down: %.0f rows/s, ratio %.2f',
	$up_rate, $down_rate, $ratio);
# Writers never contact Redis or the queue's other rows (one inbox insert
# per commit), so the rate is expected to stay the same.  This is not a benchmark: the bound is
# generous on purpose, so that only a real regression (commits waiting on
# Redis or on the worker, or work growing with the queue) breaks it, not a
# noisy machine; the figure is printed above.
cmp_ok($ratio, '>=', 0.25,
	'the write rate with Redis down is at least a quarter of the rate with Redis up');

subtest 'the queue holds every written glob, once' => sub {
	ok(defined wait_absorbed($node), 'the worker folded the commits into the queue');
	my @rows = queue_rows($node);
	my %per_glob;
	$per_glob{ $_->{glob} }++ foreach @rows;
	diag sprintf('queue entries after the outage workload: %d, for %d distinct globs '
		  . '(%d transaction-globs written)',
		scalar(@rows), scalar(keys %per_glob), $down_entries);
	cmp_ok(scalar(@rows), '>', 0, 'the queue grew');
	is_deeply([ sort keys %per_glob ], $down_globs,
		'the queued globs are exactly those of the written tenants');
	cmp_ok(scalar(@rows), '<=', $down_entries,
		'at most one entry per distinct glob per transaction');
	is_deeply([ grep { $per_glob{$_} != 1 } sort keys %per_glob ], [],
		'one waiting entry per glob: the queue does not grow with the number of commits');
};

subtest 'the worker backs off without log spam or crash loop' => sub {
	my $port = $redis->port;
	my $attempt_re = qr/tenant_cache worker .*Redis at 127\.0\.0\.1:$port\b/;
	my @attempts;
	# Seven attempts take 100+200+400+800+1600+2000 ms of backoff at least.
	my $seen = wait_until(
		sub {
			@attempts = grep { /$attempt_re/ && /cannot reach|lost its connection/ }
			  split /\n/, slurp_file($node->logfile, $log_offset);
			return @attempts >= 7;
		},
		60);
	ok(defined $seen, 'the worker keeps trying (7 failed attempts seen)');
	my $outage = Time::HiRes::time() - $t_down;
	my $log = slurp_file($node->logfile, $log_offset);
	@attempts = grep { /$attempt_re/ && /cannot reach|lost its connection/ }
	  split /\n/, $log;
	my @warnings = grep { /WARNING:/ && /tenant_cache/ } split /\n/, $log;
	diag sprintf('outage so far %.1f s: %d connection attempts, %d WARNING line(s)',
		$outage, scalar(@attempts), scalar(@warnings));
	note "worker warnings:\n" . join("\n", @warnings);
	# With the backoff (100 ms doubling, capped at 2 s) an outage of S
	# seconds takes about 5 + S/2 attempts; without backoff (or with every
	# commit's wake-up triggering a reconnect) it would be 10 per second, or
	# thousands.
	cmp_ok(scalar(@attempts), '<=', 10 + $outage,
		'connection attempts are bounded by the backoff, despite thousands of commit wake-ups');
	cmp_ok(scalar(@warnings), '>=', 1, 'the outage is reported with a WARNING');
	cmp_ok(scalar(@warnings), '<=', 2, 'at most 2 WARNING lines for the whole outage');
	is(worker_pid($node), $pid_before, 'the same worker process throughout the outage');
	unlike($log, qr/background worker "tenant_cache worker" \(PID \d+\) (?:exited|was terminated)/,
		'the worker never exited');
};

my @left;
subtest 'Redis back: every affected key is cleared' => sub {
	my $t0 = Time::HiRes::time();
	$redis->start;
	my $latency = wait_until(sub { $redis->count_existing(@affected) == 0 },
		60, $t0);
	ok(defined $latency, 'the keys of the tenants written during the outage are cleared');
	diag sprintf('affected keys gone %.3f s after Redis was started again '
		  . '(max_retry_interval_ms = %d)', $latency // -1, $max_retry_ms);
	cmp_ok($latency // 1e9, '<=', $max_retry_ms / 1000 + 2,
		'within max_retry_interval_ms + 2 s');
	my $drained = wait_until(sub { queue_count($node) == 0 }, 120, $t0);
	ok(defined $drained, 'the queue is empty again');
	diag sprintf('queue drained %.3f s after Redis was started again',
		$drained // -1);
	@left = grep { $redis->exists($_) } @affected;
	is_deeply(\@left, [], 'no affected key is left');
	is_deeply([ $redis->keys ], [ sort @unaffected ],
		'the keys of the other tenants and patterns are kept');
	is(worker_pid($node), $pid_before, 'still the same worker process');
	ok($node->log_contains(qr/tenant_cache worker: Redis at 127\.0\.0\.1:\d+ works again/,
			$log_offset),
		'the recovery is logged');
};

is($node->safe_psql('postgres', 'SELECT count(*) FROM people'),
	1 + 200 * $rows_per_tx + 2 * $reps * $n_tx * $rows_per_tx,
	'every row of every workload is in the table');

diag sprintf('faults injected: %d, invalidations expected: %d, lost: %d',
	$faults, scalar(@affected), scalar(@left));

$node->stop;
$redis->stop;
done_testing();
