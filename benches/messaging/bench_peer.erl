%% The BEAM side of `cargo bench --bench messaging`: sinks, an echo server,
%% gen_servers, and the BEAM->BEAM measurements (timed here with
%% erlang:monotonic_time and returned through ErlNode::eval).
%%
%% Sink protocol (the same for Rust and Erlang sinks): `{start, From}`, then
%% N messages of any kind, then the sink sends `{done, self()}` to From.
-module(bench_peer).
-behaviour(gen_server).

-export([sink/1, start_sink/1, echo/0, start_echo/0,
         stream/3, stream_to_new_sink/4, stream_terms_to_new_sink/4,
         stream_async/4, stream_k_to_new_sink/5, pingpong/2, large_terms/3, large_term/1,
         small_behind_large/4,
         start_servers/1, calls/3, connect/1, process_memory/1,
         lag_sink/2, stream_stamped/4, stream_stamped_to_new_sink/4]).
-export([init/1, handle_call/3, handle_cast/2]).

%% A reusable sink for runs of N messages.
sink(N) ->
    receive
        {start, From} ->
            count(N),
            From ! {done, self()},
            sink(N)
    end.

count(0) -> ok;
count(K) -> receive _ -> count(K - 1) end.

start_sink(N) -> spawn(fun() -> sink(N) end).

echo() ->
    receive
        {From, M} -> From ! M, echo()
    end.

%% A registered echo server: {From, M} -> From ! M.
start_echo() ->
    case whereis(bench_echo) of
        undefined -> register(bench_echo, spawn(fun echo/0));
        _ -> true
    end.

%% One timed run of the sink protocol: a fresh process sends start to
%% Sink, runs Send, and waits for Sink's done; returns the elapsed
%% microseconds.
timed_run(Sink, Send) ->
    Self = self(),
    P = spawn(fun() ->
        T0 = erlang:monotonic_time(),
        Sink ! {start, self()},
        Send(),
        receive {done, _} -> ok end,
        T1 = erlang:monotonic_time(),
        Self ! {self(), erlang:convert_time_unit(T1 - T0, native, microsecond)}
    end),
    receive {P, Us} -> Us end.

%% Streams N copies of Msg to Sink (start, N messages, wait for done) from
%% a fresh process; returns the elapsed microseconds.
stream(Sink, N, Msg) ->
    timed_run(Sink, fun() -> send_n(Sink, N, Msg) end).

%% BEAM->BEAM: a sink on Node, a sender here.
stream_to_new_sink(Node, N, Msg, Runs) ->
    Sink = spawn(Node, ?MODULE, sink, [N]),
    Res = [stream(Sink, N, Msg) || _ <- lists:seq(1, Runs)],
    exit(Sink, kill),
    Res.

%% BEAM->BEAM from K senders at once: a sink on Node; a process here
%% sends start, then spawns K processes that each send N div K copies of
%% Msg. N is a multiple of K. Returns the microseconds of each run.
stream_k_to_new_sink(Node, N, Msg, K, Runs) ->
    Sink = spawn(Node, ?MODULE, sink, [N]),
    Send = fun() ->
        [spawn(fun() -> send_n(Sink, N div K, Msg) end) || _ <- lists:seq(1, K)]
    end,
    Res = [timed_run(Sink, Send) || _ <- lists:seq(1, Runs)],
    exit(Sink, kill),
    Res.

%% BEAM->BEAM with the mixed_terms corpus: File holds term_to_binary of a
%% list of terms (written by the bench with erldist's encoder); a sender
%% here streams N messages to a sink on Node, cycling through that list.
stream_terms_to_new_sink(Node, File, N, Runs) ->
    {ok, Bin} = file:read_file(File),
    Terms = binary_to_term(Bin),
    Sink = spawn(Node, ?MODULE, sink, [N]),
    Res = [timed_run(Sink, fun() -> send_cycle(Sink, N, Terms, Terms) end)
           || _ <- lists:seq(1, Runs)],
    exit(Sink, kill),
    Res.

send_cycle(_, 0, _, _) -> ok;
send_cycle(Sink, K, [], All) -> send_cycle(Sink, K, All, All);
send_cycle(Sink, K, [T | Rest], All) -> Sink ! T, send_cycle(Sink, K - 1, Rest, All).

%% As stream/3, but returns at once: a fresh process streams N copies of
%% Msg to Sink and sends {stream_us, Us} (or {stream_us, timeout} when the
%% sink has not answered within 120 s) to ReplyTo. For sinks that may not
%% answer (the edp variant), so that the bench's eval never blocks on them.
stream_async(Sink, N, Msg, ReplyTo) ->
    spawn(fun() ->
        T0 = erlang:monotonic_time(),
        Sink ! {start, self()},
        send_n(Sink, N, Msg),
        receive
            {done, _} ->
                T1 = erlang:monotonic_time(),
                ReplyTo ! {stream_us, erlang:convert_time_unit(T1 - T0, native, microsecond)}
        after 120000 ->
            ReplyTo ! {stream_us, timeout}
        end
    end).

send_n(_, 0, _) -> ok;
send_n(Sink, K, Msg) -> Sink ! Msg, send_n(Sink, K - 1, Msg).

%% recv_lag: N messages, {hello, 42} but every Every-th one
%% {stamp, os:system_time(nanosecond)} (the wall clock, which the Rust
%% sink reads too), all at once (Burst 0) or Burst at a time with a
%% millisecond's wait after each; returns the elapsed microseconds.
stream_stamped(Sink, N, Every, Burst) ->
    timed_run(Sink, fun() -> send_paced(Sink, N, Every, Burst) end).

send_paced(Sink, N, Every, 0) ->
    send_stamped(Sink, N, Every, Every);
send_paced(Sink, N, Every, Burst) ->
    paced(Sink, N, Every, Every, Burst).

paced(_, 0, _, _, _) -> ok;
paced(Sink, N, Every, Left, Burst) ->
    B = min(Burst, N),
    Left2 = send_stamped(Sink, B, Every, Left),
    receive after 1 -> ok end,
    paced(Sink, N - B, Every, Left2, Burst).

%% Sends K messages, a stamp when Left reaches 1; returns the new Left.
send_stamped(_, 0, _, Left) -> Left;
send_stamped(Sink, K, Every, 1) ->
    Sink ! {stamp, os:system_time(nanosecond)},
    send_stamped(Sink, K - 1, Every, Every);
send_stamped(Sink, K, Every, Left) ->
    Sink ! {hello, 42},
    send_stamped(Sink, K - 1, Every, Left - 1).

%% A sink for one stamped run: {start, From}, N messages, then
%% {done, self()} to From and {lags, self(), Lags} to LagsTo, Lags the
%% nanoseconds from each stamp's sending to its receipt here.
lag_sink(N, LagsTo) ->
    receive
        {start, From} ->
            Lags = count_lags(N, []),
            From ! {done, self()},
            LagsTo ! {lags, self(), Lags}
    end.

count_lags(0, Lags) -> Lags;
count_lags(K, Lags) ->
    receive
        {stamp, T} -> count_lags(K - 1, [os:system_time(nanosecond) - T | Lags]);
        _ -> count_lags(K - 1, Lags)
    end.

%% BEAM->BEAM recv_lag: a lag_sink on Node, a stamped stream from here;
%% returns {Us, Lags}.
stream_stamped_to_new_sink(Node, N, Every, Burst) ->
    Sink = spawn(Node, ?MODULE, lag_sink, [N, self()]),
    Us = stream_stamped(Sink, N, Every, Burst),
    receive {lags, Sink, Lags} -> {Us, Lags} end.

%% Round trips to Echo ({From, M} -> From ! M); returns {MedianNs, P99Ns}.
pingpong(Echo, Rounds) ->
    Self = self(),
    P = spawn(fun() ->
        [rtt(Echo) || _ <- lists:seq(1, 200)],  % warm up
        Ts = lists:sort([rtt(Echo) || _ <- lists:seq(1, Rounds)]),
        Self ! {self(), {lists:nth(max(1, Rounds div 2), Ts),
                         lists:nth(max(1, (Rounds * 99) div 100), Ts)}}
    end),
    receive {P, R} -> R end.

rtt(Echo) ->
    T0 = erlang:monotonic_time(),
    Echo ! {self(), ping},
    receive ping -> ok end,
    erlang:convert_time_unit(erlang:monotonic_time() - T0, native, nanosecond).

%% A list of Bytes div 26 small tuples, {item, N, <<"abcdefgh">>}, 26
%% bytes each in the external format: the large_terms scenario's message
%% (the Rust side builds the same).
large_term(Bytes) ->
    [{item, 1000000 + I, <<"abcdefgh">>} || I <- lists:seq(1, Bytes div 26)].

%% Round trips of large_term(Bytes) to Echo ({From, M} -> From ! M), from a
%% fresh process, one untimed first; returns the median in microseconds.
large_terms(Echo, Bytes, Rounds) ->
    Self = self(),
    P = spawn(fun() ->
        T = large_term(Bytes),
        Rtt = fun() ->
            T0 = erlang:monotonic_time(),
            Echo ! {self(), T},
            receive [_ | _] -> ok end,
            erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond)
        end,
        Rtt(),
        Ts = lists:sort([Rtt() || _ <- lists:seq(1, Rounds)]),
        Self ! {self(), lists:nth(Rounds div 2 + 1, Ts)}
    end),
    receive {P, R} -> R end.

%% Rounds of a small round trip to Echo ({From, M} -> From ! M) made while
%% another process sends a Bytes-byte binary to Sink (the sink protocol,
%% N = 1), from a fresh process, one untimed round first. Returns
%% {RttUs, DeliveryUs}: the medians of the round trip and of the time
%% until Sink has the binary.
small_behind_large(Echo, Sink, Bytes, Rounds) ->
    Self = self(),
    P = spawn(fun() ->
        Big = binary:copy(<<1>>, Bytes),
        [_ | Rs] = [behind_large(Echo, Sink, Big) || _ <- lists:seq(0, Rounds)],
        {Rtts, Dels} = lists:unzip(Rs),
        Self ! {self(), {middle(Rtts), middle(Dels)}}
    end),
    receive {P, R} -> R end.

%% One round: start, then the binary from another process; once that
%% process is sending, the round trip.
behind_large(Echo, Sink, Big) ->
    Self = self(),
    T0 = erlang:monotonic_time(),
    Sink ! {start, Self},
    spawn(fun() -> Self ! sending, Sink ! Big end),
    receive sending -> ok end,
    Rtt = rtt(Echo),
    receive {done, Sink} -> ok end,
    Us = erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond),
    {Rtt div 1000, Us}.

middle(L) -> lists:nth(length(L) div 2 + 1, lists:sort(L)).

%% K gen_servers registered as bench_gs_1 .. bench_gs_K.
start_servers(K) ->
    [begin
         Name = list_to_atom("bench_gs_" ++ integer_to_list(I)),
         case whereis(Name) of
             undefined -> {ok, _} = gen_server:start({local, Name}, ?MODULE, [], []);
             _ -> ok
         end,
         Name
     end || I <- lists:seq(1, K)],
    ok.

init([]) -> {ok, 0}.
handle_call(_Req, _From, S) -> {reply, pong, S + 1}.
handle_cast(_Req, S) -> {noreply, S}.

%% K callers here, caller I calling {bench_gs_I, Node} for Ms milliseconds;
%% returns the total number of completed calls.
calls(Node, K, Ms) ->
    Self = self(),
    Deadline = erlang:monotonic_time(millisecond) + Ms,
    Ps = [spawn(fun() ->
              Name = list_to_atom("bench_gs_" ++ integer_to_list(I)),
              Self ! {self(), call_loop({Name, Node}, Deadline, 0)}
          end) || I <- lists:seq(1, K)],
    lists:sum([receive {P, C} -> C end || P <- Ps]).

call_loop(Server, Deadline, C) ->
    case erlang:monotonic_time(millisecond) >= Deadline of
        true -> C;
        false -> pong = gen_server:call(Server, ping), call_loop(Server, Deadline, C + 1)
    end.

%% Disconnects from Node, waits until the connection is gone, and times a
%% net_adm:ping (EPMD lookup, handshake, the net_kernel call); microseconds.
connect(Node) ->
    erlang:disconnect_node(Node),
    wait_gone(Node, 100),
    timer:sleep(200),
    T0 = erlang:monotonic_time(),
    pong = net_adm:ping(Node),
    erlang:convert_time_unit(erlang:monotonic_time() - T0, native, microsecond).

wait_gone(_, 0) -> ok;
wait_gone(Node, K) ->
    case lists:member(Node, nodes()) of
        true -> timer:sleep(10), wait_gone(Node, K - 1);
        false -> ok
    end.

%% Bytes per idle process (blocked in receive, with its mailbox), from the
%% growth of erlang:memory(processes) over spawning N of them.
process_memory(N) ->
    erlang:garbage_collect(),
    M0 = erlang:memory(processes),
    Ps = [spawn(fun() -> receive stop -> ok end end) || _ <- lists:seq(1, N)],
    %% Let every process reach its receive.
    timer:sleep(200),
    M1 = erlang:memory(processes),
    [P ! stop || P <- Ps],
    (M1 - M0) div N.
