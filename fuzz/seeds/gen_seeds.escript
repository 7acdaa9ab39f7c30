#!/usr/bin/env escript
%% Writes term_to_binary outputs of varied terms into the directory given
%% as the first argument (the decode target's seed corpus). Run:
%%   escript fuzz/seeds/gen_seeds.escript fuzz/seeds/decode
main([Dir]) ->
    Self = self(),
    Ref = make_ref(),
    Port = hd(erlang:ports()),
    X = 42,
    Local = fun(Y) -> X + Y end,
    Local0 = fun() -> ok end,
    Big = 1 bsl 200,
    BigMap = maps:from_list([{I, integer_to_binary(I)} || I <- lists:seq(1, 40)]),
    Terms = [
        0, 1, 255, 256, -1, 2147483647, -2147483648, 2147483648, -2147483649,
        (1 bsl 63) - 1, 1 bsl 63, -(1 bsl 63), -(1 bsl 63) - 1, Big, -Big,
        1 bsl 2100, 0.0, -0.0, 3.14, 1.0e300, -1.0e-300,
        ok, true, '', 'hello world', 'ünïcödé', '日本語', list_to_atom(lists:duplicate(255, $a)),
        <<>>, <<1,2,3>>, <<1:1>>, <<255, 7:3>>, binary:copy(<<"abc">>, 1000),
        [], "hello", [1,2,3], [256, 1000, -5], [a | b], [1, 2 | 3], [[], [[]]],
        lists:seq(1, 300), lists:duplicate(70000, $x),
        {}, {ok}, {hello, 42}, {'$gen_call', {Self, Ref}, {get, key}},
        list_to_tuple(lists:seq(1, 300)),
        #{}, #{a => 1}, #{name => <<"kate">>, age => 33, tags => [x, y]},
        #{1 => a, 1.0 => b}, #{[1] => {}, <<"k">> => #{nested => true}}, BigMap,
        Self, Ref, Port, make_ref(),
        fun lists:map/2, fun erlang:self/0, Local, Local0,
        {Self, [Ref, Port], #{fun lists:map/2 => Local}},
        lists:foldl(fun(_, Acc) -> {Acc} end, nil, lists:seq(1, 200)),
        lists:foldl(fun(_, Acc) -> [Acc] end, [], lists:seq(1, 200)),
        {'$gen_cast', {log, <<"line">>, [{level, info}, {time, 1700000000000}]}}
    ],
    lists:foldl(
      fun(T, N) ->
              write(Dir, N, term_to_binary(T)),
              write(Dir, N + 1, term_to_binary(T, [compressed])),
              write(Dir, N + 2, term_to_binary(T, [{minor_version, 1}])),
              N + 3
      end, 0, Terms),
    io:format("wrote ~p seeds~n", [3 * length(Terms)]).

write(Dir, N, Bin) ->
    ok = file:write_file(filename:join(Dir, io_lib:format("otp_~3..0B", [N])), Bin).
