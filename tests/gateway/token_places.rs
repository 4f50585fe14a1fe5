//! One token per request (RFC 6750 §2), end to end: a token in more than one place is refused
//! before the origin, and a token taken from the query or a cookie does not reach the origin.

use crate::support::*;

const SOURCES: [&str; 3] = ["header", "cookie:session", "query:access_token"];
const CHALLENGE: &str = "Bearer realm=\"edgewarden\", error=\"invalid_request\", \
                         error_description=\"bearer token sent in more than one place\"";

/// Routes reading all three places: required, required and forwarding, optional; and one with
/// authentication off.
async fn gateway() -> (Gateway, EchoOrigin, Signer) {
    let signer = Signer::rsa(RSA_A, "key-a");
    let origin_ = echo_origin("o").await;
    let reading_all = |name: &str, auth: &str| {
        route(name, &format!("/{name}"), "o")
            .set("auth", auth)
            .set("token_from", SOURCES)
    };
    let config = Config::new()
        .with(pem_issuer())
        .with(origin("o", &[origin_.addr]))
        .with(reading_all("api", "required"))
        .with(reading_all("fwd", "required").set("forward_authorization", true))
        .with(reading_all("maybe", "optional"))
        .with(reading_all("open", "off"));
    (Gateway::builder(config).start().await, origin_, signer)
}

/// What the origin must see of an accepted request.
struct Seen {
    /// Path and query as the origin received them.
    url: String,
    cookies: Vec<String>,
    authorization: Option<String>,
}

/// One request and what must come of it: `None` is a 400 that never reaches the origin.
struct Case {
    what: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
    seen: Option<Seen>,
}

fn case(what: &'static str, target: String, headers: &[(&'static str, &str)]) -> Case {
    Case {
        what,
        target,
        headers: headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        seen: None,
    }
}

impl Case {
    fn forwarded(mut self, url: &str, cookies: &[&str], authorization: Option<&str>) -> Case {
        self.seen = Some(Seen {
            url: url.to_string(),
            cookies: cookies.iter().map(|c| c.to_string()).collect(),
            authorization: authorization.map(str::to_string),
        });
        self
    }

    async fn check(&self, gw: &Gateway, origin: &EchoOrigin) {
        let what = self.what;
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let hits = origin.hits();
        let resp = req("GET", &self.target)
            .headers(&headers)
            .try_send(gw.addr)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let Some(seen) = &self.seen else {
            assert_eq!(
                resp.status,
                400,
                "{what}: {}",
                String::from_utf8_lossy(&resp.body)
            );
            assert_eq!(resp.header("www-authenticate"), Some(CHALLENGE), "{what}");
            assert_eq!(resp.json()["error"], "ambiguous_token", "{what}");
            assert_eq!(
                origin.hits(),
                hits,
                "{what}: the origin saw a rejected request"
            );
            return;
        };
        assert_eq!(
            resp.status,
            200,
            "{what}: {}",
            String::from_utf8_lossy(&resp.body)
        );
        let json = resp.json();
        let mut url = json["path"].as_str().expect("path").to_string();
        if let Some(query) = json["query"].as_str() {
            url = format!("{url}?{query}");
        }
        assert_eq!(url, seen.url, "{what}: URL at the origin");
        let saw = resp.origin_saw();
        let cookies = saw.get("cookie").cloned().unwrap_or_default();
        assert_eq!(cookies, seen.cookies, "{what}: Cookie at the origin");
        let authorization = saw.get("authorization").map(|v| v.join(", "));
        assert_eq!(
            authorization, seen.authorization,
            "{what}: Authorization at the origin"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_per_request_and_it_never_reaches_the_origin() {
    let (gw, origin, signer) = gateway().await;
    let t = signer.token(&good_claims("user-1"));
    let other = signer.token(&good_claims("user-2"));
    let bearer = format!("Bearer {t}");
    let session = format!("session={t}");

    let rejected = [
        case(
            "header and query",
            format!("/api/x?access_token={t}"),
            &[("Authorization", &bearer)],
        ),
        case(
            "header and cookie",
            "/api/x".into(),
            &[("Authorization", &bearer), ("Cookie", &session)],
        ),
        case(
            "query and cookie",
            format!("/api/x?access_token={t}"),
            &[("Cookie", &session)],
        ),
        case(
            "query twice",
            format!("/api/x?access_token={t}&a=1&access_token={other}"),
            &[],
        ),
        case(
            "query twice, the same token",
            format!("/api/x?access_token={t}&access_token={t}"),
            &[],
        ),
        case(
            "query twice, once with a percent-encoded name",
            format!("/api/x?access%5Ftoken={other}&access_token={t}"),
            &[],
        ),
        case(
            "cookie twice in one field",
            "/api/x".into(),
            &[(
                "Cookie",
                &format!("session={t}; theme=dark; session={other}"),
            )],
        ),
        case(
            "cookie twice in two fields",
            "/api/x".into(),
            &[
                ("Cookie", &session),
                ("Cookie", &format!("theme=dark; session={other}")),
            ],
        ),
        case(
            "header and an empty query parameter",
            "/api/x?access_token=".into(),
            &[("Authorization", &bearer)],
        ),
        case(
            "optional route: header and query",
            format!("/maybe/x?access_token={t}"),
            &[("Authorization", &bearer)],
        ),
        case(
            "forwarding route: query and cookie",
            format!("/fwd/x?access_token={t}"),
            &[("Cookie", &session)],
        ),
    ];
    for c in &rejected {
        c.check(&gw, &origin).await;
    }

    let accepted = [
        case(
            "token only in the query",
            format!("/api/x?a=1&access_token={t}&b=two%20words&c"),
            &[],
        )
        .forwarded("/api/x?a=1&b=two%20words&c", &[], None),
        case(
            "the token is the whole query",
            format!("/api/x?access_token={t}"),
            &[],
        )
        .forwarded("/api/x", &[], None),
        case(
            "percent-encoded name",
            format!("/api/x?access%5Ftoken={t}&z=9"),
            &[],
        )
        .forwarded("/api/x?z=9", &[], None),
        case(
            "token only in a cookie",
            "/api/x?a=1".into(),
            &[("Cookie", &format!("theme=dark; session={t}; lang=en"))],
        )
        .forwarded("/api/x?a=1", &["theme=dark; lang=en"], None),
        case(
            "token cookie in the second Cookie field",
            "/api/x".into(),
            &[("Cookie", "theme=dark"), ("Cookie", &session)],
        )
        .forwarded("/api/x", &["theme=dark"], None),
        case(
            "token only in the header",
            "/api/x?a=1".into(),
            &[("Authorization", &bearer), ("Cookie", "theme=dark")],
        )
        .forwarded("/api/x?a=1", &["theme=dark"], None),
        case(
            "forwarding route: query kept",
            format!("/fwd/x?a=1&access_token={t}"),
            &[],
        )
        .forwarded(&format!("/fwd/x?a=1&access_token={t}"), &[], None),
        case(
            "forwarding route: cookie kept",
            "/fwd/x".into(),
            &[("Cookie", &format!("theme=dark; {session}"))],
        )
        .forwarded("/fwd/x", &[&format!("theme=dark; {session}")], None),
        case(
            "forwarding route: header kept",
            "/fwd/x".into(),
            &[("Authorization", &bearer)],
        )
        .forwarded("/fwd/x", &[], Some(&bearer)),
        case(
            "optional route: query token removed",
            format!("/maybe/x?access_token={t}&k=v"),
            &[],
        )
        .forwarded("/maybe/x?k=v", &[], None),
        case(
            "optional route, anonymous: untouched",
            "/maybe/x?access_token=&k=v".into(),
            &[("Cookie", "theme=dark")],
        )
        .forwarded("/maybe/x?access_token=&k=v", &["theme=dark"], None),
        case(
            "auth off: nothing changes",
            format!("/open/x?access_token={t}"),
            &[("Authorization", &bearer), ("Cookie", &session)],
        )
        .forwarded(
            &format!("/open/x?access_token={t}"),
            &[&session],
            Some(&bearer),
        ),
    ];
    for c in &accepted {
        c.check(&gw, &origin).await;
    }

    let count = |m: &Metrics, route: &str| {
        m.count(
            "edgewarden_auth_rejections_total",
            &[("route", route), ("reason", "ambiguous_token")],
        )
    };
    let m = gw
        .metrics_when(|m| count(m, "api") + count(m, "maybe") + count(m, "fwd") >= 11.0)
        .await;
    assert_eq!(
        (count(&m, "api"), count(&m, "maybe"), count(&m, "fwd")),
        (9.0, 1.0, 1.0)
    );
}
