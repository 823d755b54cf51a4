
# Copyright (c) tenant_cache authors

=pod

=head1 NAME

TenantCacheTest - helpers for the TAP tests of tenant_cache

=head1 SYNOPSIS

  use PostgreSQL::Test::Cluster;
  use PostgreSQL::Test::Utils;
  use Test::More;
  use TenantCacheTest;

  my $redis = TenantCacheTest::Redis->new;     # started, on a free port
  my $node  = tc_node('main', redis_port => $redis->port,
                      settings => { 'tenant_cache.poll_interval_ms' => 5000 });
  $redis->set_keys('tenant:1:client:2:bu:3:dropdown:people:all');
  my $secs = wait_until(sub { !$redis->exists('...') }, 30);

=head1 DESCRIPTION

A Redis server of the tests' own, on a free loopback port (from
PostgreSQL::Test::Cluster::get_free_port()), with its working directory under
tmp_check and its log under tmp_check/log.  Every server started through this
module is stopped in an END block, even when a test dies, and also when it
was left stalled with SIGSTOP.

=cut

package TenantCacheTest;

use strict;
use warnings;

use Carp;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

our @EXPORT = qw(tc_node wait_until worker_pid queue_rows queue_count
  psql_timed wait_absorbed set_setting fault_summary);

=pod

=head1 FUNCTIONS

=over

=item tc_node($name, redis_port => $port, settings => { name => value }, start => 1)

Create, initialise and (unless start => 0) start a PostgreSQL::Test::Cluster
node with shared_preload_libraries = 'tenant_cache' and the worker pointed at
127.0.0.1:$port.  Values in settings are written to postgresql.conf quoted.

=cut

sub tc_node
{
	my ($name, %opt) = @_;
	croak "tc_node: redis_port is required" unless defined $opt{redis_port};

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	my %settings = (
		'shared_preload_libraries' => 'tenant_cache',
		'tenant_cache.redis_host' => '127.0.0.1',
		'tenant_cache.redis_port' => $opt{redis_port},
		%{ $opt{settings} || {} });
	my $conf = "\n# tenant_cache TAP test settings\n";
	foreach my $k (sort keys %settings)
	{
		(my $v = $settings{$k}) =~ s/'/''/g;
		$conf .= "$k = '$v'\n";
	}
	$node->append_conf('postgresql.conf', $conf);
	$node->start unless defined $opt{start} && !$opt{start};
	return $node;
}

=pod

=item wait_until($condition, $timeout_seconds, $since)

Call $condition every 10 ms until it returns true or $timeout_seconds (default
PostgreSQL::Test::Utils::timeout_default) have passed.  Returns the seconds
elapsed since $since (a Time::HiRes::time() value; default: the call) when the
condition held, undef on timeout.  The condition is always tried once more
after the deadline.

=cut

sub wait_until
{
	my ($cond, $timeout, $since) = @_;
	$timeout = $PostgreSQL::Test::Utils::timeout_default
	  unless defined $timeout;
	my $start = Time::HiRes::time();
	$since = $start unless defined $since;
	for (;;)
	{
		my $expired = Time::HiRes::time() - $start > $timeout;
		return Time::HiRes::time() - $since if $cond->();
		return undef if $expired;
		usleep(10_000);
	}
}

=pod

=item worker_pid($node)

PID of the tenant_cache worker from pg_stat_activity, or '' when none runs.

=cut

sub worker_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'tenant_cache worker'"
	);
}

=pod

=item queue_count($node), queue_rows($node)

Number of rows of the view tenant_cache.queue; the rows themselves as a list
of hashes (id, glob, attempts, last_error, next_attempt_at), by id.

=cut

sub queue_count
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		'SELECT count(*) FROM tenant_cache.queue');
}

# Commits append to tenant_cache.inbox; the worker reads those rows, applies
# their globs or, while Redis is down, queues one entry per glob in
# tenant_cache.pending.  Wait until it has read them all.
sub wait_absorbed
{
	my ($node, $timeout) = @_;
	return wait_until(
		sub {
			$node->safe_psql('postgres',
				'SELECT NOT EXISTS (SELECT 1 FROM tenant_cache.inbox)') eq 't';
		},
		$timeout // 10);
}

sub queue_rows
{
	my ($node) = @_;
	my $out = $node->safe_psql(
		'postgres', q{
		SELECT id, glob, attempts, coalesce(last_error, '<null>'),
		       coalesce(next_attempt_at::text, '<null>')
		FROM tenant_cache.queue ORDER BY id},
		extra_params => [ '-F', "\x1f" ]);
	my @rows;
	foreach my $line (split /\n/, $out)
	{
		my ($id, $glob, $attempts, $err, $next) = split /\x1f/, $line, -1;
		push @rows,
		  {
			id => $id,
			glob => $glob,
			attempts => $attempts,
			last_error => $err eq '<null>' ? undef : $err,
			next_attempt_at => $next eq '<null>' ? undef : $next,
		  };
	}
	return @rows;
}

=pod

=item psql_timed($session, $sql)

Run $sql through a PostgreSQL::Test::BackgroundPsql session (dies on error)
and return its run time in seconds.

=cut

sub psql_timed
{
	my ($session, $sql) = @_;
	my $t0 = Time::HiRes::time();
	$session->query_safe($sql);
	return Time::HiRes::time() - $t0;
}

=item set_setting($node, $name, $value)

ALTER SYSTEM SET $name = '$value', reload, and wait until a new session sees
the value (the postmaster has then signalled every process; the worker takes
it at its next wake-up).  One test assertion.

=cut

sub set_setting
{
	my ($node, $name, $value) = @_;
	my $loaded = $node->safe_psql('postgres', 'SELECT pg_catalog.pg_conf_load_time()');
	$node->safe_psql('postgres', "ALTER SYSTEM SET $name = '$value'");
	$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
	# A new session inherits the postmaster's reload time.
	return ok(
		$node->poll_query_until('postgres',
			"SELECT pg_catalog.pg_conf_load_time() > '$loaded'"),
		"$name = $value is in effect");
}

=item fault_summary($faults, $expected, $lost)

The closing line of a fault suite, "faults injected: F, invalidations
expected: E, lost: L", and the test that L is 0.

=cut

sub fault_summary
{
	my ($faults, $expected, $lost) = @_;
	diag sprintf('faults injected: %d, invalidations expected: %d, lost: %d',
		$faults, $expected, $lost);
	return is($lost, 0, 'no invalidation lost');
}

=pod

=back

=cut

package TenantCacheTest::Redis;

use strict;
use warnings;

use Carp;
use File::Basename qw(basename);
use File::Path qw(make_path);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my @servers;

# Is the process there?  A daemonized server's exit is reaped by init, which
# may take its time: a zombie counts as gone.
sub _alive
{
	my ($pid) = @_;
	return 0 unless kill(0, $pid);
	if (open my $fh, '<', "/proc/$pid/stat")
	{
		my $stat = <$fh> // '';
		close $fh;
		return 0 if $stat =~ /^\d+ \(.*\) Z/s;
	}
	return 1;
}

=pod

=head1 TenantCacheTest::Redis

=over

=item TenantCacheTest::Redis->new(name => 'a', port => $port, start => 1, args => [...], sentinel => $conf)

A Redis server on 127.0.0.1 and a free port (unless given), started unless
start => 0.  No snapshots are taken (--save '') and no AOF is kept; see
stop(save => 1) for keeping keys over a restart.  args are appended to the
command line (say --replicaof 127.0.0.1 PORT, or --cluster-enabled yes).
With sentinel => $text, the server is a sentinel whose configuration file
(written in its directory, which Sentinel rewrites) holds $text.

=cut

sub new
{
	my ($class, %opt) = @_;
	my $port = $opt{port} // PostgreSQL::Test::Cluster::get_free_port();
	my $test = basename($0);
	$test =~ s/\.pl$//;
	my $name = $opt{name} // 'redis';
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/${test}_${name}_$port";
	make_path($dir);
	unlink "$dir/dump.rdb";
	my $self = bless {
		port => $port,
		name => $name,
		dir => $dir,
		pidfile => "$dir/redis.pid",
		logfile =>
		  "$PostgreSQL::Test::Utils::log_path/${test}_${name}_$port.log",
		pid => undef,
		paused => 0,
		args => $opt{args} || [],
		sentinel => $opt{sentinel},
	}, $class;
	push @servers, $self;
	$self->start unless defined $opt{start} && !$opt{start};
	return $self;
}

=pod

=item $redis->db($n)

A handle on logical database $n of the same server, for the key commands
below (cmd, set_keys, exists, keys, ...); start, stop and pause belong to
the server's own object.

=cut

sub db
{
	my ($self, $n) = @_;
	return bless { %$self, db => $n, is_db_handle => 1 }, ref $self;
}

sub port { return $_[0]->{port}; }
sub pid { return $_[0]->{pid}; }
sub logfile { return $_[0]->{logfile}; }

=pod

=item $redis->start

Start (or start again, on the same port) and wait until PING answers.  Keys
saved by stop(save => 1) are loaded again.

=cut

sub start
{
	my ($self) = @_;
	croak "start() on a database handle" if $self->{is_db_handle};
	croak "Redis on port $self->{port} is already running"
	  if $self->{pid};
	unlink $self->{pidfile};
	my @cmd = (
		'redis-server', '--port', $self->{port},
		'--bind', '127.0.0.1',
		'--save', '',
		'--appendonly', 'no',
		'--dir', $self->{dir},
		'--dbfilename', 'dump.rdb',
		'--daemonize', 'yes',
		'--pidfile', $self->{pidfile},
		'--logfile', $self->{logfile},
		@{ $self->{args} });
	if (defined $self->{sentinel})
	{
		my $conf = "$self->{dir}/sentinel.conf";
		open my $cf, '>', $conf or BAIL_OUT("cannot write $conf: $!");
		print $cf $self->{sentinel};
		close $cf;
		@cmd = (
			'redis-server', $conf, '--sentinel',
			'--port', $self->{port},
			'--bind', '127.0.0.1',
			'--dir', $self->{dir},
			'--daemonize', 'yes',
			'--pidfile', $self->{pidfile},
			'--logfile', $self->{logfile},
			@{ $self->{args} });
	}
	note "starting Redis: @cmd";
	IPC::Run::run(\@cmd, '<', '/dev/null', '>>', $self->{logfile}, '2>&1')
	  or BAIL_OUT("redis-server on port $self->{port} failed to start");

	my $up = TenantCacheTest::wait_until(
		sub {
			return 0 unless -s $self->{pidfile};
			my ($out) = $self->try_cmd('PING');
			return defined $out && $out eq 'PONG';
		},
		60);
	BAIL_OUT("Redis on port $self->{port} does not answer PING")
	  unless defined $up;
	open my $fh, '<', $self->{pidfile}
	  or BAIL_OUT("cannot read $self->{pidfile}: $!");
	my $pid = <$fh>;
	close $fh;
	chomp $pid;
	$self->{pid} = $pid;
	$self->{paused} = 0;
	note sprintf("Redis pid %d answers on 127.0.0.1:%d after %.3f s",
		$pid, $self->{port}, $up);
	return;
}

=pod

=item $redis->stop(save => 0)

Stop the server and wait until its process is gone.  With save => 1 it is
stopped with SHUTDOWN SAVE, so that the next start() loads the keys it had;
otherwise with SIGTERM (no snapshot: the next start is empty).

=cut

sub stop
{
	my ($self, %opt) = @_;
	croak "stop() on a database handle" if $self->{is_db_handle};
	my $pid = $self->{pid};
	return unless $pid;
	$self->resume if $self->{paused};
	if ($opt{save})
	{
		$self->try_cmd('SHUTDOWN', 'SAVE');
	}
	else
	{
		unlink "$self->{dir}/dump.rdb";
		kill 'TERM', $pid;
	}
	my $gone = TenantCacheTest::wait_until(sub { !_alive($pid) }, 60);
	unless (defined $gone)
	{
		diag "Redis pid $pid did not stop; sending SIGKILL";
		kill 'KILL', $pid;
		TenantCacheTest::wait_until(sub { !_alive($pid) }, 10);
	}
	if ($opt{save} && !-s "$self->{dir}/dump.rdb")
	{
		croak "Redis on port $self->{port} stopped without saving its keys";
	}
	note "Redis pid $pid on port $self->{port} stopped";
	$self->{pid} = undef;
	return;
}

=pod

=item $redis->restart(save => 0)

stop(%opt) then start(), on the same port.

=cut

sub restart
{
	my ($self, %opt) = @_;
	$self->stop(%opt);
	$self->start;
	return;
}

=pod

=item $redis->pause, $redis->resume

Stall the server with SIGSTOP (connections stay open, nothing is answered)
and let it go on with SIGCONT.

=cut

sub pause
{
	my ($self) = @_;
	croak "pause() on a database handle" if $self->{is_db_handle};
	croak "Redis is not running" unless $self->{pid};
	kill 'STOP', $self->{pid};
	$self->{paused} = 1;
	return;
}

sub resume
{
	my ($self) = @_;
	return unless $self->{pid};
	kill 'CONT', $self->{pid};
	$self->{paused} = 0;
	return;
}

=pod

=item $redis->try_cmd(@args), $redis->cmd(@args)

Run redis-cli -h 127.0.0.1 -p PORT @args (with a timeout) and return its
output without the trailing newline; in list context the output lines.
try_cmd returns undef (or ()) when redis-cli fails; cmd dies.

=cut

sub _run_cli
{
	my ($self, $stdin, @args) = @_;
	my ($out, $err) = ('', '');
	unshift @args, '-n', $self->{db} if $self->{db};
	my $ok = eval {
		IPC::Run::run(
			[ 'redis-cli', '-h', '127.0.0.1', '-p', $self->{port}, @args ],
			'<', \$stdin, '>', \$out, '2>', \$err,
			IPC::Run::timeout(60));
	};
	my $why = $@;
	$ok = 0 if $ok && $err =~ /Could not connect|Connection refused/;
	return ($ok, $out, $why || $err);
}

sub try_cmd
{
	my ($self, @args) = @_;
	my ($ok, $out) = $self->_run_cli('', @args);
	return wantarray ? () : undef unless $ok;
	chomp $out;
	return wantarray ? split(/\n/, $out) : $out;
}

sub cmd
{
	my ($self, @args) = @_;
	my ($ok, $out, $err) = $self->_run_cli('', @args);
	croak "redis-cli -p $self->{port} @args failed: $err" unless $ok;
	chomp $out;
	return wantarray ? split(/\n/, $out) : $out;
}

sub _resp
{
	my @args = @_;
	my $s = '*' . scalar(@args) . "\r\n";
	$s .= '$' . length($_) . "\r\n$_\r\n" foreach @args;
	return $s;
}

=pod

=item $redis->set_keys(@keys), $redis->set_keys({ key => value, ... })

SET many keys in one redis-cli --pipe run (value '1' for a plain list).

=cut

sub set_keys
{
	my ($self, @keys) = @_;
	my %kv = ref $keys[0] eq 'HASH' ? %{ $keys[0] } : map { $_ => '1' } @keys;
	return unless %kv;
	my $in = join '', map { _resp('SET', $_, $kv{$_}) } sort(CORE::keys %kv);
	my $n = scalar(CORE::keys %kv);
	if ($self->{db})
	{
		$in = _resp('SELECT', $self->{db}) . $in;
		$n++;
	}
	# --pipe takes no -n: the stream selects the database itself.
	local $self->{db} = 0;
	my ($ok, $out, $err) = $self->_run_cli($in, '--pipe');
	croak "redis-cli --pipe failed: $err $out"
	  unless $ok
	  && $out =~ /errors: 0, replies: (\d+)/
	  && $1 == $n;
	return;
}

=pod

=item $redis->exists($key), $redis->count_existing(@keys), $redis->dbsize, $redis->keys($pattern), $redis->clients, $redis->flushall

EXISTS of one key (true or false); how many of @keys exist; DBSIZE; the keys
matching $pattern (default '*'), sorted; FLUSHALL.

=cut

sub exists
{
	my ($self, $key) = @_;
	return $self->cmd('EXISTS', $key) eq '1';
}

sub count_existing
{
	my ($self, @keys) = @_;
	return 0 unless @keys;
	return 0 + $self->cmd('EXISTS', @keys);
}

sub dbsize
{
	my ($self) = @_;
	return 0 + $self->cmd('DBSIZE');
}

sub keys
{
	my ($self, $pattern) = @_;
	my @k = $self->cmd('KEYS', $pattern // '*');
	return sort grep { $_ ne '' } @k;
}

=pod

=item $redis->clients

CLIENT LIST lines of the connections other than this module's redis-cli
runs: those last sent a command of ours (CLIENT LIST, KEYS, EXISTS, SET,
...), which leaves them out even while Redis has not yet noticed that one of
them closed.  In these tests what remains is the worker's connection.

=cut

sub clients
{
	my ($self) = @_;
	return grep {
		$_ ne ''
		  && !/\bcmd=(?:client\|list|keys|exists|set|flushall|dbsize|ping|shutdown)\b/
	} $self->cmd('CLIENT', 'LIST');
}

sub flushall
{
	my ($self) = @_;
	$self->cmd('FLUSHALL');
	return;
}

=pod

=back

=cut

# Stop every server this process started, even after a die, and even when it
# was stalled; keep the test's exit status.
END
{
	my $exit_code = $?;
	foreach my $s (@servers)
	{
		my $pid = $s->{pid};
		next unless $pid && _alive($pid);
		kill 'CONT', $pid;
		kill 'TERM', $pid;
		for (my $i = 0; $i < 100 && _alive($pid); $i++)
		{
			usleep(100_000);
		}
		kill 'KILL', $pid if _alive($pid);
		$s->{pid} = undef;
	}
	$? = $exit_code;
}

1;
