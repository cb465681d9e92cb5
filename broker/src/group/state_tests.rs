//! Unit tests of the group state machine: join, sync, heartbeat, expiry, static members.
use super::*;

const SESSION: Duration = Duration::from_secs(10);

fn req(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        instance_id: instance.map(str::to_owned),
        client_id: "c".into(),
        client_host: String::new(),
        session_timeout: SESSION,
        rebalance_timeout: SESSION,
        protocol_type: "consumer".into(),
        protocols: protocols
            .iter()
            .map(|p| ((*p).to_owned(), Bytes::from_static(b"md")))
            .collect(),
        require_known_member_id: true,
    }
}

fn join(g: &mut Group, r: JoinRequest, now: Instant) -> oneshot::Receiver<JoinOutcome> {
    let (tx, rx) = oneshot::channel();
    g.join(r, now, Duration::ZERO, tx);
    rx
}

/// Joins a new dynamic member through the MEMBER_ID_REQUIRED round trip.
fn join_new(g: &mut Group, now: Instant) -> (String, oneshot::Receiver<JoinOutcome>) {
    let mut first = join(g, req("", None, &["range"]), now);
    let out = first.try_recv().expect("answered at once");
    assert_eq!(out.error, Some(ResponseError::MemberIdRequired));
    let rx = join(g, req(&out.member_id, None, &["range"]), now);
    (out.member_id, rx)
}

fn sync(
    g: &mut Group,
    id: &str,
    generation: i32,
    plan: Vec<(String, Bytes)>,
) -> oneshot::Receiver<SyncOutcome> {
    let (tx, rx) = oneshot::channel();
    g.sync(id, None, generation, plan, tx);
    rx
}

#[test]
fn first_member_gets_an_id_then_leads_a_stable_group() {
    let now = Instant::now();
    let mut g = Group::new("g".into());
    let (a, mut rx) = join_new(&mut g, now);
    let out = rx.try_recv().expect("join completed");
    assert_eq!(
        (out.error, out.generation, out.leader.as_str()),
        (None, 1, a.as_str())
    );
    assert_eq!(out.members.len(), 1, "the leader sees the members");
    assert_eq!(g.state, GroupState::CompletingRebalance);
    let mut s = sync(&mut g, &a, 1, vec![(a.clone(), Bytes::from_static(b"p0"))]);
    assert_eq!(s.try_recv().expect("synced"), Ok(Bytes::from_static(b"p0")));
    assert_eq!(g.state, GroupState::Stable);
    assert_eq!(g.heartbeat(&a, None, 1, now), Ok(()));
    assert_eq!(
        g.heartbeat(&a, None, 0, now),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        g.heartbeat("nobody", None, 1, now),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_second_member_rebalances_and_followers_get_the_leaders_assignment() {
    let now = Instant::now();
    let mut g = Group::new("g".into());
    let (a, mut rx) = join_new(&mut g, now);
    rx.try_recv().expect("joined");
    let _pending = sync(&mut g, &a, 1, vec![]);
    let (b, mut rx_b) = join_new(&mut g, now);
    assert_eq!(g.state, GroupState::PreparingRebalance);
    assert!(rx_b.try_recv().is_err(), "waits for the others to rejoin");
    assert_eq!(
        g.heartbeat(&a, None, 1, now),
        Err(ResponseError::RebalanceInProgress)
    );
    let mut rx_a = join(&mut g, req(&a, None, &["range"]), now);
    let (out_a, out_b) = (rx_a.try_recv().expect("a"), rx_b.try_recv().expect("b"));
    assert_eq!((out_a.generation, out_b.generation), (2, 2));
    assert_eq!(out_a.leader, a, "the leader stays");
    assert!(out_b.members.is_empty(), "followers get no member list");
    let mut follower = sync(&mut g, &b, 2, vec![]);
    assert!(follower.try_recv().is_err(), "waits for the leader");
    let plan = vec![
        (a.clone(), Bytes::from_static(b"A")),
        (b.clone(), Bytes::from_static(b"B")),
    ];
    let mut leader = sync(&mut g, &a, 2, plan);
    assert_eq!(
        leader.try_recv().expect("leader"),
        Ok(Bytes::from_static(b"A"))
    );
    assert_eq!(
        follower.try_recv().expect("follower"),
        Ok(Bytes::from_static(b"B"))
    );
}

#[test]
fn an_expired_member_is_removed_and_the_rest_rebalance() {
    let now = Instant::now();
    let mut g = Group::new("g".into());
    let (a, mut rx) = join_new(&mut g, now);
    rx.try_recv().expect("joined");
    let _pending = sync(&mut g, &a, 1, vec![]);
    let (b, _rx_b) = join_new(&mut g, now);
    let mut rx_a = join(&mut g, req(&a, None, &["range"]), now);
    rx_a.try_recv().expect("generation 2");
    let _pending = sync(&mut g, &a, 2, vec![]);
    assert_eq!(g.state, GroupState::Stable);
    // Only `a` keeps heartbeating.
    let later = now + SESSION + Duration::from_millis(1);
    g.heartbeat(&a, None, 2, later - Duration::from_millis(2))
        .expect("alive");
    g.tick(later);
    assert!(!g.members.contains_key(&b), "b expired");
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let mut again = join(&mut g, req(&a, None, &["range"]), later);
    assert_eq!(again.try_recv().expect("rejoined").generation, 3);
}

#[test]
fn a_static_member_rejoining_with_the_same_subscription_keeps_its_assignment() {
    let now = Instant::now();
    let mut g = Group::new("g".into());
    let mut rx = join(&mut g, req("", Some("i1"), &["range"]), now);
    let first = rx.try_recv().expect("static members join at once");
    assert_eq!(first.error, None);
    let _pending = sync(
        &mut g,
        &first.member_id,
        1,
        vec![(first.member_id.clone(), Bytes::from_static(b"P"))],
    );
    let mut rx = join(&mut g, req("", Some("i1"), &["range"]), now);
    let second = rx.try_recv().expect("answered without a rebalance");
    assert_eq!((second.error, second.generation), (None, 1));
    assert_ne!(second.member_id, first.member_id);
    assert_eq!(g.state, GroupState::Stable);
    let (tx, mut s) = oneshot::channel();
    g.sync(&second.member_id, Some("i1"), 1, vec![], tx);
    assert_eq!(s.try_recv().expect("sync"), Ok(Bytes::from_static(b"P")));
    assert_eq!(
        g.heartbeat(&first.member_id, Some("i1"), 1, now),
        Err(ResponseError::FencedInstanceId)
    );
}

#[test]
fn leaving_members_empty_the_group_and_protocols_must_match() {
    let now = Instant::now();
    let mut g = Group::new("g".into());
    let (a, mut rx) = join_new(&mut g, now);
    rx.try_recv().expect("joined");
    let mut other = join(&mut g, req("", None, &["roundrobin"]), now);
    assert_eq!(
        other.try_recv().expect("refused").error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    assert_eq!(g.leave(&a, None, now), Ok(()));
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.leave(&a, None, now), Err(ResponseError::UnknownMemberId));
    assert_eq!(g.delete(), Ok(()));
    assert_eq!(
        g.check_commit(-1, "", None),
        Ok(()),
        "simple consumers commit to empty groups"
    );
}
