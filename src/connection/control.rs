//! Control messages: the tuples of `erl_dist_protocol` §"Protocol between connected nodes".
