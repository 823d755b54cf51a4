
# Copyright (c) tenant_cache authors

# Pub/sub announcements of applied globs (tenant_cache.publish_channel):
#  - with the setting empty (the default) nothing at all is published;
#  - with a channel, a subscriber gets one JSON message per applied glob,
#    with the glob, its model(s) and pattern, the tenant/client/bu values
#    read back from the glob (unescaped; null where the glob has "*"), the
#    keys deleted and the writer's commit time, for each of two tenants;
#  - a rolled-back write publishes nothing;
#  - a PUBLISH that Redis refuses (ACL) does not fail the glob: its keys are
#    gone, its queue entry too, and the refusal is counted in stats.
#
# "Nothing arrived" is checked without sleeping: after the worker committed
# (queue empty, which follows its PUBLISH), the test publishes a marker on
# the same Redis; Redis delivers a subscriber's messages in order, so once
# the marker arrived, anything published before it has too.

use strict;
use warnings;

use JSON::PP;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my $redis = TenantCacheTest::Redis->new;
my $node = tc_node(
	'publish',
	redis_port => $redis->port,
	settings => { 'tenant_cache.poll_interval_ms' => 5000 });

$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id int PRIMARY KEY, tenant_id int, client_id int,
                     bu_id int, name text);
CREATE TABLE asset (id int PRIMARY KEY, tenant_id text, client_id text,
                    bu_id text, status text);
SELECT tenant_cache.register_dependency('People',
    ARRAY['dropdown:people', 'dashboard:metrics'], 'tenant');
SELECT tenant_cache.register_dependency('Asset',
    ARRAY['dashboard:metrics', 'asset:status'], 'bu');
SELECT tenant_cache.watch_table('people', 'People', 'tenant_id', 'client_id', 'bu_id');
SELECT tenant_cache.watch_table('asset', 'Asset', 'tenant_id', 'client_id', 'bu_id');
INSERT INTO people VALUES (1, 1, 2, 3, 'ann'), (2, 2, 2, 3, 'bob'),
                          (5, 5, 2, 3, 'eve'), (6, 6, 2, 3, 'fay');
INSERT INTO asset VALUES (1, 'a"b*c', 'x?', 'y[1]', 'up');
});
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'the queue is drained after the setup');

# A subscriber to every channel: redis-cli in raw mode prints each element
# of a pmessage on its own line (pmessage, pattern, channel, payload).
my ($sub_out, $sub_err) = ('', '');
my $sub = IPC::Run::start(
	[ 'redis-cli', '-h', '127.0.0.1', '-p', $redis->port, 'PSUBSCRIBE', '*' ],
	'<', \undef, '>', \$sub_out, '2>', \$sub_err);
my $seen = 0;    # lines of $sub_out already parsed

# The messages received since the last call: [channel, payload] pairs.
sub received
{
	$sub->pump_nb;
	my @lines = split /\n/, $sub_out, -1;
	pop @lines;    # an incomplete last line (or the empty string after \n)
	my @msgs;
	while ($seen + 3 < @lines)
	{
		if ($lines[$seen] ne 'pmessage')
		{
			$seen++;    # psubscribe confirmation
			next;
		}
		push @msgs, [ $lines[ $seen + 2 ], $lines[ $seen + 3 ] ];
		$seen += 4;
	}
	return @msgs;
}

ok( defined wait_until(
		sub {
			$sub->pump_nb;
			$sub_out =~ /^psubscribe\n\*\n1\n/;
		},
		30),
	'the subscriber is subscribed');

my $marker_no = 0;

# Wait until the worker committed everything queued, publish a marker, and
# return every message received before it.
sub messages_until_drained
{
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		'the queue is drained');
	my $marker = 'marker ' . ++$marker_no;
	$redis->cmd('PUBLISH', 'test_marker', $marker);
	my @msgs;
	my $got = wait_until(
		sub {
			push @msgs, received();
			return scalar grep { $_->[1] eq $marker } @msgs;
		},
		30);
	ok(defined $got, "$marker arrived");
	return grep { $_->[0] ne 'test_marker' } @msgs;
}

# 1. Setting empty (the default): nothing is published.
$redis->set_keys('tenant:1:client:2:bu:3:dropdown:people:all');
$node->safe_psql('postgres', q{UPDATE people SET name = 'ann2' WHERE id = 1});
ok( defined wait_until(
		sub { !$redis->exists('tenant:1:client:2:bu:3:dropdown:people:all') },
		30),
	'empty publish_channel: the write is applied');
is(scalar(messages_until_drained()), 0,
	'empty publish_channel: nothing is published');

# 2. With a channel, and the key_format of a django-redis cache with
# KEY_PREFIX "myapp" and VERSION 2.
$node->append_conf('postgresql.conf',
	    "tenant_cache.publish_channel = 'tc_events'\n"
	  . "tenant_cache.key_format = 'myapp:2:tenant:{tenant}:client:{client}:bu:{bu}:{pattern}'\n"
);
$node->restart;
ok($node->poll_query_until('postgres',
		"SELECT redis_connected FROM tenant_cache.stats"),
	'the worker is connected again after the restart');
# The subscriber's connection to Redis survived the restart of PostgreSQL.

my @app_keys = qw(
  tenant:1:client:2:bu:3:dropdown:people:all
  tenant:1:client:9:bu:9:dropdown:people:other
  tenant:1:client:2:bu:3:dashboard:metrics:today
  tenant:2:client:2:bu:3:dropdown:people:all
  tenant:2:client:2:bu:3:dashboard:metrics:today
  tenant:2:client:4:bu:4:dashboard:metrics:week
  tenant:3:client:2:bu:3:dropdown:people:all
  tenant:1:client:2:bu:3:report:x*y);
$redis->set_keys(map { "myapp:2:$_" } @app_keys);

# The README's Django listener (test/django/core/local_cache.py), on a local
# memory cache holding the same keys, when Debian's python3-django and
# python3-redis are there.
my ($py_out, $py_err) = ('', '');
my $py;
if (system('/usr/bin/python3', '-c', 'import django, redis') == 0)
{
	$py = IPC::Run::start(
		[
			'/usr/bin/python3',
			"$FindBin::RealBin/../django/local_cache_check.py",
			$redis->port,
			'tc_events',
			'tenant:2:client:2:bu:3:dropdown:people:all',
			@app_keys
		],
		'<', \undef, '>', \$py_out, '2>', \$py_err);
	ok( defined wait_until(
			sub {
				$py->pump_nb;
				$py_out =~ /^ready$/m
				  && ($redis->cmd('PUBSUB', 'NUMSUB', 'tc_events'))[1] == 1;
			},
			60),
		'the Django listener is subscribed') or diag $py_err;
}

my $before = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
$node->safe_psql('postgres', q{UPDATE people SET name = 'ann3' WHERE id = 1});
$node->safe_psql('postgres', q{UPDATE people SET name = 'bob3' WHERE id = 2});
my $after = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
my @msgs = messages_until_drained();
is(scalar(@msgs), 4, 'two tenants x two patterns: four messages')
  or diag explain \@msgs;
is(scalar(grep { $_->[0] ne 'tc_events' } @msgs), 0,
	'all of them on channel tc_events');
my %by_glob = map { my $m = decode_json($_->[1]); ($m->{glob} => $m) } @msgs;
is_deeply(
	[ sort keys %by_glob ],
	[
		'myapp:2:tenant:1:client:*:bu:*:dashboard:metrics*',
		'myapp:2:tenant:1:client:*:bu:*:dropdown:people*',
		'myapp:2:tenant:2:client:*:bu:*:dashboard:metrics*',
		'myapp:2:tenant:2:client:*:bu:*:dropdown:people*',
	],
	'one message per applied glob');

# A SCAN page's UNLINK count goes to one glob of the page: the sum is exact.
my $sum = 0;
$sum += $_->{keys_deleted} foreach values %by_glob;
is($sum, 6, 'keys_deleted of the four messages add up to the 6 keys deleted');

my $m = $by_glob{'myapp:2:tenant:1:client:*:bu:*:dropdown:people*'};
my $ts = delete $m->{committed_at};
like(delete $m->{keys_deleted}, qr/^\d+$/, 'keys_deleted is a number');
is_deeply(
	$m,
	{
		database => 'postgres',
		glob => 'myapp:2:tenant:1:client:*:bu:*:dropdown:people*',
		model => 'People',
		models => ['People'],
		pattern => 'dropdown:people',
		tenant => '1',
		client => undef,
		bu => undef,
	},
	'tenant 1 dropdown:people: every field');
like($ts, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$/,
	'committed_at is ISO 8601 with an offset');
is( $node->safe_psql(
		'postgres',
		"SELECT '$ts'::timestamptz BETWEEN '$before' AND '$after'"),
	't',
	'committed_at is the time of the commit');

$m = $by_glob{'myapp:2:tenant:2:client:*:bu:*:dashboard:metrics*'};
is_deeply(
	[
		$m->{model}, $m->{models}, $m->{pattern}, $m->{tenant}
	],
	[ undef, [ 'Asset', 'People' ], 'dashboard:metrics', '2' ],
	'tenant 2 dashboard:metrics: a pattern of two models: model null, both in models'
);
is($redis->exists('myapp:2:tenant:3:client:2:bu:3:dropdown:people:all'),
	1, "tenant 3's key is untouched");

SKIP:
{
	skip 'no /usr/bin/python3 with django and redis', 2 unless $py;
	ok(defined wait_until(sub { $py->pump_nb; $py_out =~ /^left: /m }, 60),
		'the Django listener saw the last glob')
	  or diag $py_err;
	my ($left) = $py_out =~ /^left: (.*)$/m;
	is( $left,
		'tenant:1:client:2:bu:3:report:x*y tenant:3:client:2:bu:3:dropdown:people:all',
		'the Django listener dropped exactly the local entries of the applied globs'
	);
	$py->finish;
}

# Values with glob metacharacters and quotes come back unescaped, as JSON.
$node->safe_psql('postgres', q{UPDATE asset SET status = 'down' WHERE id = 1});
@msgs = map { decode_json($_->[1]) } messages_until_drained();
is(scalar(@msgs), 2, 'asset write: two messages');
($m) = grep { $_->{pattern} eq 'asset:status' } @msgs;
is_deeply(
	[ $m->{glob}, $m->{tenant}, $m->{client}, $m->{bu}, $m->{model} ],
	[
		'myapp:2:tenant:a"b\*c:client:x\?:bu:y\[1\]:asset:status*', 'a"b*c',
		'x?', 'y[1]',
		'Asset'
	],
	'asset write: escaped glob, values unescaped');

# 3. A rolled-back write publishes nothing; a later committed one does.
$node->safe_psql(
	'postgres', q{
BEGIN;
UPDATE people SET name = 'eve2' WHERE id = 5;
ROLLBACK;
});
$node->safe_psql('postgres', q{UPDATE people SET name = 'fay2' WHERE id = 6});
@msgs = map { decode_json($_->[1]) } messages_until_drained();
is_deeply([ sort map { $_->{tenant} } @msgs ],
	[ '6', '6' ], 'rolled-back write: only the committed write is published');

# 4. A PUBLISH that Redis refuses does not fail the glob.
$node->safe_psql('postgres', 'SELECT tenant_cache.stats_reset()');
$redis->cmd('ACL', 'SETUSER', 'default', '-publish');
$redis->set_keys('myapp:2:tenant:5:client:2:bu:3:dropdown:people:all');
my $log_offset = -s $node->logfile;
$node->safe_psql('postgres', q{UPDATE people SET name = 'eve3' WHERE id = 5});
ok( defined wait_until(
		sub { !$redis->exists('myapp:2:tenant:5:client:2:bu:3:dropdown:people:all') },
		30),
	'refused PUBLISH: the keys are deleted');
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM tenant_cache.queue'),
	'refused PUBLISH: the entries are done, not retried');
$node->wait_for_log(qr/could not publish on channel "tc_events": PUBLISH: NOPERM/,
	$log_offset);
is( $node->safe_psql(
		'postgres',
		q{SELECT globs_applied, redis_errors > 0, last_error ~ 'NOPERM'
		  FROM tenant_cache.stats}),
	'2|t|t',
	'refused PUBLISH: globs counted as applied, the refusal as a Redis error');
$redis->cmd('ACL', 'SETUSER', 'default', '+publish');

$sub->kill_kill;
$node->stop;
done_testing();
