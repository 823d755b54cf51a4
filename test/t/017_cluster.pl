
# Copyright (c) tenant_cache authors

# Redis Cluster (tenant_cache.redis_mode = cluster), against a real cluster
# of 3 masters and 3 replicas made with redis-cli --cluster create on
# loopback:
#  - the test's own CRC16 key slot (used to place keys) agrees with CLUSTER
#    KEYSLOT for random keys, hash tags included;
#  - from a single seed the worker finds every master; keys of two tenants
#    spread over all masters; one transaction's invalidations (exact keys,
#    some with hash tags, and SCAN globs) clear them on every master and
#    nothing else; the exact keys went straight to their slot's master (no
#    MOVED in any master's INFO errorstats) and the UNLINKs never drew
#    CROSSSLOT;
#  - two reshards (redis-cli --cluster reshard, 1500 slots there and 1500
#    back) during a stream of writes lose nothing: every affected key ends
#    gone, every other key stays, the queue ends empty;
#  - while a slot is migrating (CLUSTER SETSLOT MIGRATING/IMPORTING), a
#    write's exact key is cleared but its SCAN glob stays queued, saying
#    why; once the slot is stable it is applied;
#  - a replica promotion (CLUSTER FAILOVER) during a stream of writes loses
#    nothing either;
#  - with one master stalled (SIGSTOP) a fast shutdown does not wait for
#    the command's timeout;
#  - figures: the same drain on the cluster and, after switching
#    redis_mode to standalone at reload, on a single Redis.

use strict;
use warnings;

use IPC::Run;
use Time::HiRes;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

use FindBin;
use lib "$FindBin::RealBin/../lib";
use TenantCacheTest;

my @servers;
foreach my $i (1 .. 6)
{
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	# The bus port too (the default, port + 10000, may be taken).
	my $bus = PostgreSQL::Test::Cluster::get_free_port();
	push @servers,
	  TenantCacheTest::Redis->new(
		name => "node$i",
		port => $port,
		args => [
			'--cluster-enabled', 'yes',
			'--cluster-config-file', "nodes-$port.conf",
			'--cluster-node-timeout', '3000',
			'--cluster-port', $bus
		]);
}
my %by_port = map { $_->port => $_ } @servers;
my @create = ('redis-cli', '--cluster', 'create',
	(map { '127.0.0.1:' . $_->port } @servers),
	'--cluster-replicas', '1', '--cluster-yes');
my ($out, $err);
ok(IPC::Run::run(\@create, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120)),
	'redis-cli --cluster create');
note $out;

sub cluster_ok
{
	foreach my $s (@servers)
	{
		return 0 unless grep { /^cluster_state:ok/ } $s->cmd('CLUSTER', 'INFO');
	}
	return 1;
}
ok(defined wait_until(\&cluster_ok, 60), 'the cluster is up');

# Masters and slot owners, from CLUSTER NODES.
sub cluster_map
{
	my (@owner, %masters, %ids);
	foreach my $line ($servers[0]->cmd('CLUSTER', 'NODES'))
	{
		my @f = split / /, $line;
		next unless @f >= 8 && $f[2] =~ /\bmaster\b/ && $f[2] !~ /fail/;
		my ($port) = $f[1] =~ /:(\d+)@/;
		next unless @f > 8;
		$masters{$port} = 1;
		$ids{$port} = $f[0];
		foreach my $r (@f[ 8 .. $#f ])
		{
			next if $r =~ /^\[/;
			my ($a, $b) = split /-/, $r;
			$b //= $a;
			$owner[$_] = $port foreach $a .. $b;
		}
	}
	return (\@owner, [ sort keys %masters ], \%ids);
}

sub crc16
{
	my $crc = 0;
	foreach my $c (unpack('C*', $_[0]))
	{
		$crc ^= $c << 8;
		foreach (1 .. 8)
		{
			$crc = ($crc & 0x8000) ? (($crc << 1) ^ 0x1021) : ($crc << 1);
			$crc &= 0xffff;
		}
	}
	return $crc;
}

sub key_slot
{
	my ($k) = @_;
	$k = $1 if $k =~ /^[^{]*\{([^}]+)\}/;
	return crc16($k) % 16384;
}

# 1. The key slot.
{
	my $bad = 0;
	my @chars = ('a' .. 'z', '0' .. '9', ':', '{', '}', '*');
	foreach my $i (1 .. 200)
	{
		my $k = join '', map { $chars[ int(rand(@chars)) ] } 1 .. 1 + int(rand(20));
		$k = "tenant:{t$i}:x" if $i % 10 == 0;
		my $want = $servers[0]->cmd('CLUSTER', 'KEYSLOT', $k);
		$bad++, diag("slot of '$k': $want, computed " . key_slot($k))
		  if key_slot($k) != $want;
	}
	is($bad, 0, 'the key slot agrees with CLUSTER KEYSLOT for 200 random keys');
}

# Keys, each SET on the master owning its slot.
sub set_cluster_keys
{
	my (@keys) = @_;
	my ($owner) = cluster_map();
	my %per;
	push @{ $per{ $owner->[ key_slot($_) ] } }, $_ foreach @keys;
	$by_port{$_}->set_keys(@{ $per{$_} }) foreach keys %per;
	return scalar keys %per;
}

# Every key of the cluster (KEYS * on each master).
sub cluster_keys
{
	my (undef, $masters) = cluster_map();
	my %all;
	foreach my $p (@$masters)
	{
		$all{$_} = 1 foreach $by_port{$p}->keys('*');
	}
	return \%all;
}

sub count_present
{
	my ($all, @keys) = @_;
	return scalar grep { $all->{$_} } @keys;
}

my (undef, $masters0) = cluster_map();
is(scalar @$masters0, 3, 'three masters');

my $node = tc_node(
	'cluster',
	redis_port => $servers[0]->port,
	settings => {
		'tenant_cache.redis_mode' => 'cluster',
		'tenant_cache.redis_nodes' => '127.0.0.1:' . $servers[0]->port,
		'tenant_cache.poll_interval_ms' => 200,
		'tenant_cache.max_retry_interval_ms' => 500,
		'tenant_cache.command_timeout_ms' => 3000,
		'tenant_cache.scan_count' => 20,
	});
$node->safe_psql(
	'postgres', q{
CREATE EXTENSION tenant_cache;
CREATE TABLE people (id text PRIMARY KEY, tenant_id text, client_id int, bu_id int);
SELECT tenant_cache.register_dependency('Person', ARRAY['person:{id}$', 'card:{id}:'], 'bu');
SELECT tenant_cache.watch_table('people', 'Person', 'tenant_id', 'client_id', 'bu_id');
});

# Keys of row $id of tenant $t.
sub row_keys
{
	my ($t, $id) = @_;
	return ("tenant:$t:client:1:bu:1:person:$id",
		"tenant:$t:client:1:bu:1:card:$id:a",
		"tenant:$t:client:1:bu:1:card:$id:b");
}

my (@affected, @kept);

sub check_round
{
	my ($what) = @_;
	my $all;
	my $secs = wait_until(
		sub { $all = cluster_keys(); count_present($all, @affected) == 0 },
		90);
	ok(defined $secs, "$what: every affected key is gone on every master");
	is(count_present($all, @affected), 0, "$what: lost = 0");
	my ($owner) = cluster_map();
	my @left = grep { $all->{$_} } @affected;
	diag "left: $_ (slot " . key_slot($_) . ' on ' . $owner->[ key_slot($_) ] . ')'
	  foreach splice(@left, 0, 10);
	is(count_present($all, @kept), scalar @kept,
		"$what: every other key is still there");
	ok($node->poll_query_until('postgres',
			'SELECT count(*) = 0 FROM tenant_cache.queue'),
		"$what: the queue ends empty");
	return;
}

sub errorstat
{
	my ($kind) = @_;
	my $n = 0;
	foreach my $s (@servers)
	{
		foreach ($s->cmd('INFO', 'errorstats'))
		{
			$n += $1 if /^errorstat_\Q$kind\E:count=(\d+)/;
		}
	}
	return $n;
}

# 2. Invalidations on every master, nothing else.
{
	my @rows = ((map { "a$_" } 1 .. 40), '{h1}x', '{h2}y', 'z{h3}');
	foreach my $id (@rows, map { "k$_" } 1 .. 20)
	{
		my @k = row_keys(1, $id);
		if ($id =~ /^k/) { push @kept, @k; }
		else { push @affected, @k; }
		push @kept, row_keys(2, $id);
	}
	push @kept, 'tenant:1:client:1:bu:1:person:a1:x', 'unrelated:{h1}';
	is(set_cluster_keys(@affected, @kept), 3, 'the keys are spread over all three masters');
	$servers[$_]->cmd('CONFIG', 'RESETSTAT') foreach 0 .. 5;
	$node->safe_psql('postgres',
		'INSERT INTO people VALUES '
		  . join(', ', map { "('$_', '1', 1, 1)" } @rows));
	check_round('one transaction');
	is(errorstat('MOVED'), 0, 'exact keys went straight to their slot\'s master (no MOVED)');
	is(errorstat('CROSSSLOT'), 0, 'no CROSSSLOT');
}

# 3. Reshards during a stream of writes: slots move from one master to
# another and then others back, so that keys move both ways between a
# master the worker scans early and one it scans late.
{
	my ($owner, $masters, $ids) = cluster_map();
	my @ids = map { "r$_" } 1 .. 600;
	my @new = ((map { row_keys(1, $_) } @ids), (map { row_keys(2, $_) } @ids));
	set_cluster_keys(@new);
	my @reshard = map {
		my ($from, $to) = @$_;
		"redis-cli --cluster reshard 127.0.0.1:$masters->[0] --cluster-from $ids->{$from} "
		  . "--cluster-to $ids->{$to} --cluster-slots 1500 --cluster-yes"
	} ([ $masters->[0], $masters->[1] ], [ $masters->[1], $masters->[0] ]);
	my ($rout, $rerr) = ('', '');
	# The second waits until every node agrees on the first one's result.
	my $agree = "until redis-cli --cluster check 127.0.0.1:$masters->[0] >/dev/null 2>&1; "
	  . "do sleep 0.2; done";
	my $reshard = IPC::Run::start([ 'sh', '-c', join(' && ', $reshard[0], $agree, $reshard[1]) ],
		'<', \undef, '>', \$rout, '2>', \$rerr, IPC::Run::timeout(300));
	my $i = 0;
	foreach my $id (@ids)
	{
		last if $i >= 100 && !$reshard->pumpable;
		$node->safe_psql('postgres', "INSERT INTO people VALUES ('$id', '1', 1, 1)");
		push @affected, row_keys(1, $id);
		$i++;
	}
	my $during = $reshard->pumpable ? 1 : 0;
	ok($reshard->finish, 'redis-cli --cluster reshard, there and back')
	  or diag "reshard: $rout\n$rerr";
	note "$i writes; the reshards were still running when the writes ended: $during";
	push @kept, row_keys(2, $_) foreach @ids;
	push @kept, row_keys(1, $_) foreach @ids[ $i .. $#ids ];
	my $moved = () = $rout =~ /^Moving slot \d+ from/mg;
	is($moved, 3000, '3000 slot moves');
	check_round('reshards during writes');
}

# 3b. While a slot migrates, a SCAN pass does not count: the SCAN glob
# stays queued (a key moving from a master not scanned yet to one already
# scanned would be missed), the exact key of the same write is cleared;
# once the slot is stable again the glob is applied.
{
	my ($owner, $masters, $ids) = cluster_map();
	my ($from, $to) = @$masters[ 0, 1 ];
	my ($slot) = grep { $owner->[$_] == $from } 0 .. 16383;
	$by_port{$to}->cmd('CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $ids->{$from});
	$by_port{$from}->cmd('CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $ids->{$to});
	my @k = row_keys(1, 'm1');
	set_cluster_keys(@k);
	push @affected, @k;
	$node->safe_psql('postgres', "INSERT INTO people VALUES ('m1', '1', 1, 1)");
	ok($node->poll_query_until('postgres',
			"SELECT bool_or(last_error LIKE '%slots are moving%') FROM tenant_cache.queue"),
		'while a slot migrates, the SCAN glob stays queued, saying why');
	my $all = cluster_keys();
	is(count_present($all, $k[0]), 0, '... the exact key is gone');
	is(count_present($all, @k[ 1, 2 ]), 2, '... the SCAN glob\'s keys are still there');
	$by_port{$_}->cmd('CLUSTER', 'SETSLOT', $slot, 'STABLE') foreach ($from, $to);
	check_round('slot stable again');
}

# 4. A replica promoted (CLUSTER FAILOVER) during a stream of writes.
{
	my (undef, $masters) = cluster_map();
	my $old = $masters->[2];
	my ($replica) = grep {
		grep { /^master_port:$old\r?$/ } $_->cmd('INFO', 'replication')
	} @servers;
	ok($replica, "a replica of master $old");
	my @ids = map { "f$_" } 1 .. 80;
	my @new = ((map { row_keys(1, $_) } @ids), (map { row_keys(2, $_) } @ids));
	push @affected, row_keys(1, $_) foreach @ids;
	push @kept, row_keys(2, $_) foreach @ids;
	set_cluster_keys(@new);
	$_->cmd('WAIT', '1', '5000') foreach map { $by_port{$_} } @$masters;
	my $n = 0;
	foreach my $id (@ids)
	{
		$node->safe_psql('postgres', "INSERT INTO people VALUES ('$id', '1', 1, 1)");
		is($replica->cmd('CLUSTER', 'FAILOVER'), 'OK', 'CLUSTER FAILOVER accepted')
		  if ++$n == 20;
	}
	ok( defined wait_until(
			sub {
				my (undef, $m) = cluster_map();
				grep { $_ == $replica->port } @$m;
			},
			60),
		'the replica is a master now');
	check_round('replica promotion during writes');

	# The worker knows the new slot map: exact keys go straight there.
	$_->cmd('CONFIG', 'RESETSTAT') foreach @servers;
	my @after = map { "g$_" } 1 .. 60;
	my @k = map { "tenant:1:client:1:bu:1:person:$_" } @after;
	set_cluster_keys(@k);
	push @affected, @k;
	$node->safe_psql('postgres',
		'INSERT INTO people VALUES '
		  . join(', ', map { "('$_', '1', 1, 1)" } @after));
	check_round('exact keys after the promotion');
	is(errorstat('MOVED'), 0, 'after the promotion exact keys go straight to their new master');
}

# 4b. One master stalled (SIGSTOP) while the worker talks to it: a fast
# shutdown does not wait for the command's timeout.
{
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET tenant_cache.command_timeout_ms = 20000; SELECT pg_reload_conf();");
	ok($node->poll_query_until('postgres',
			"SELECT current_setting('tenant_cache.command_timeout_ms') = '20s'"),
		'command_timeout_ms = 20 s');
	my (undef, $masters) = cluster_map();
	my @k = row_keys(1, 'h1');
	set_cluster_keys(@k);
	push @affected, @k;
	my $stalled = $by_port{ $masters->[1] };
	$stalled->pause;
	my $t_commit = Time::HiRes::time();
	$node->safe_psql('postgres', "INSERT INTO people VALUES ('h1', '1', 1, 1)");
	ok( $node->poll_query_until(
			'postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		WHERE backend_type = 'tenant_cache worker'
		  AND state = 'active' AND wait_event_type = 'Extension'}),
		'the worker waits on the stalled master');
	my $t0 = Time::HiRes::time();
	$node->stop('fast');
	my $t1 = Time::HiRes::time();
	$stalled->resume;
	note sprintf('fast stop with one master stalled: %.3f s', $t1 - $t0);
	cmp_ok($t1 - $t_commit, '<', 15,
		'fast shutdown did not wait for the stalled command\'s 20 s timeout');
	$node->start;
	$node->safe_psql('postgres',
		"ALTER SYSTEM SET tenant_cache.command_timeout_ms = 3000; SELECT pg_reload_conf();");
	check_round('after the fast shutdown');
}

# 5. Figures, and a switch of mode at reload: the same drain on the
# cluster, then (redis_mode = standalone) on a single Redis.  20,000 other
# keys; one transaction of 100 rows queues 100 exact keys and 100 SCAN
# globs (scan_count 1000).  Time: from the INSERT to every key gone.
my $single = TenantCacheTest::Redis->new(name => 'single');
$node->safe_psql('postgres',
	"ALTER SYSTEM SET tenant_cache.scan_count = 1000; SELECT pg_reload_conf();");
sub drain
{
	my ($label, $tenant, $set, $present) = @_;
	my @rows = map { "$tenant-d$_" } 1 .. 100;
	my @mine = map { row_keys($tenant, $_) } @rows;
	my @filler = map { "filler:$tenant:$_" } 1 .. 20000;
	$set->(@mine, @filler);
	my $t0 = Time::HiRes::time();
	$node->safe_psql('postgres',
		'INSERT INTO people VALUES '
		  . join(', ', map { "('$_', '$tenant', 1, 1)" } @rows));
	my $secs = wait_until(sub { $present->(@mine) == 0 }, 60, $t0);
	ok(defined $secs, "$label: the 300 keys of 100 rows are gone");
	is($present->(@filler), 20000, "$label: the 20,000 other keys stay");
	note sprintf('drain figure: %s: 100 exact keys + 100 SCAN globs over 20,300 keys: %.0f ms',
		$label, 1000 * ($secs // 0));
	return;
}
drain('3-master cluster', 'c1', \&set_cluster_keys,
	sub { my $all = cluster_keys(); count_present($all, @_) });
$node->safe_psql('postgres', sprintf(
	"ALTER SYSTEM SET tenant_cache.redis_mode = 'standalone';
	 ALTER SYSTEM SET tenant_cache.redis_port = %d; SELECT pg_reload_conf();",
	$single->port));
ok($node->poll_query_until('postgres',
		"SELECT current_setting('tenant_cache.redis_mode') = 'standalone'"),
	'redis_mode = standalone at reload');
drain('single Redis', 's1', sub { $single->set_keys(@_) },
	sub { my %all = map { $_ => 1 } $single->keys('*'); count_present(\%all, @_) });
ok($node->log_contains(qr/Redis settings changed, reconnecting/),
	'the worker reconnected at reload');

$node->stop;
done_testing();
