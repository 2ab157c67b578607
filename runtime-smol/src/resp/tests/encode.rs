//! Exact bytes of every reply type in RESP2 and RESP3

use crate::resp::{Protocol, Reply, encode};

fn resp2(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    encode(reply, Protocol::Resp2, &mut out);
    out
}

fn resp3(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    encode(reply, Protocol::Resp3, &mut out);
    out
}

/// Asserts both encodings of `reply`
fn both(reply: Reply, in_resp2: &[u8], in_resp3: &[u8]) {
    assert_eq!(
        resp2(&reply),
        in_resp2,
        "RESP2 {reply:?}: {:?}",
        String::from_utf8_lossy(&resp2(&reply))
    );
    assert_eq!(
        resp3(&reply),
        in_resp3,
        "RESP3 {reply:?}: {:?}",
        String::from_utf8_lossy(&resp3(&reply))
    );
}

#[test]
fn shared_types_encode_the_same() {
    both(Reply::ok(), b"+OK\r\n", b"+OK\r\n");
    both(Reply::error("ERR no"), b"-ERR no\r\n", b"-ERR no\r\n");
    both(Reply::Integer(0), b":0\r\n", b":0\r\n");
    both(Reply::Integer(-42), b":-42\r\n", b":-42\r\n");
    both(
        Reply::Integer(i64::MIN),
        b":-9223372036854775808\r\n",
        b":-9223372036854775808\r\n",
    );
    both(
        Reply::Integer(i64::MAX),
        b":9223372036854775807\r\n",
        b":9223372036854775807\r\n",
    );
    both(Reply::bulk("abc"), b"$3\r\nabc\r\n", b"$3\r\nabc\r\n");
    both(Reply::bulk(""), b"$0\r\n\r\n", b"$0\r\n\r\n");
    both(
        Reply::bulk(b"a\r\nb"),
        b"$4\r\na\r\nb\r\n",
        b"$4\r\na\r\nb\r\n",
    );
    let array = Reply::Array(Some(vec![Reply::Integer(1), Reply::bulk("x")]));
    both(
        array,
        b"*2\r\n:1\r\n$1\r\nx\r\n",
        b"*2\r\n:1\r\n$1\r\nx\r\n",
    );
    both(Reply::Array(Some(vec![])), b"*0\r\n", b"*0\r\n");
}

#[test]
fn nulls() {
    both(Reply::Bulk(None), b"$-1\r\n", b"_\r\n");
    both(Reply::Array(None), b"*-1\r\n", b"_\r\n");
    both(Reply::Null, b"$-1\r\n", b"_\r\n");
}

#[test]
fn line_breaks_in_status_and_errors_become_spaces() {
    both(
        Reply::error("ERR a\r\nb\nc"),
        b"-ERR a  b c\r\n",
        b"-ERR a  b c\r\n",
    );
    both(Reply::Simple("x\ry".to_owned()), b"+x y\r\n", b"+x y\r\n");
}

#[test]
fn maps_flatten_in_resp2() {
    let map = Reply::Map(vec![
        (Reply::bulk("a"), Reply::Integer(1)),
        (Reply::bulk("b"), Reply::Null),
    ]);
    both(
        map,
        b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n$-1\r\n",
        b"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n_\r\n",
    );
    both(Reply::Map(vec![]), b"*0\r\n", b"%0\r\n");
}

#[test]
fn sets_and_pushes_are_arrays_in_resp2() {
    both(
        Reply::Set(vec![Reply::bulk("a")]),
        b"*1\r\n$1\r\na\r\n",
        b"~1\r\n$1\r\na\r\n",
    );
    let push = Reply::Push(vec![Reply::bulk("message"), Reply::Boolean(true)]);
    both(
        push,
        b"*2\r\n$7\r\nmessage\r\n:1\r\n",
        b">2\r\n$7\r\nmessage\r\n#t\r\n",
    );
}

#[test]
fn booleans_are_integers_in_resp2() {
    both(Reply::Boolean(true), b":1\r\n", b"#t\r\n");
    both(Reply::Boolean(false), b":0\r\n", b"#f\r\n");
}

#[test]
fn doubles_are_bulk_strings_in_resp2() {
    both(Reply::Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n");
    both(Reply::Double(1.0), b"$1\r\n1\r\n", b",1\r\n");
    both(Reply::Double(-0.25), b"$5\r\n-0.25\r\n", b",-0.25\r\n");
    both(Reply::Double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n");
    both(
        Reply::Double(f64::NEG_INFINITY),
        b"$4\r\n-inf\r\n",
        b",-inf\r\n",
    );
    both(Reply::Double(f64::NAN), b"$3\r\nnan\r\n", b",nan\r\n");
    both(Reply::Double(1e300), b"$6\r\n1e+300\r\n", b",1e+300\r\n");
    both(
        Reply::Double(-2.5e-7),
        b"$7\r\n-2.5e-7\r\n",
        b",-2.5e-7\r\n",
    );
    both(Reply::Double(0.1), b"$3\r\n0.1\r\n", b",0.1\r\n");
}

#[test]
fn verbatim_strings_are_plain_bulk_in_resp2() {
    let reply = Reply::Verbatim {
        format: *b"txt",
        text: b"hi".to_vec(),
    };
    both(reply, b"$2\r\nhi\r\n", b"=6\r\ntxt:hi\r\n");
}

#[test]
fn nested_aggregates_degrade_throughout() {
    let reply = Reply::Array(Some(vec![Reply::Map(vec![(
        Reply::Boolean(true),
        Reply::Set(vec![]),
    )])]));
    both(
        reply,
        b"*1\r\n*2\r\n:1\r\n*0\r\n",
        b"*1\r\n%1\r\n#t\r\n~0\r\n",
    );
}

#[test]
fn encode_appends() {
    let mut out = b"keep".to_vec();
    encode(&Reply::Integer(7), Protocol::Resp2, &mut out);
    assert_eq!(out, b"keep:7\r\n");
}
