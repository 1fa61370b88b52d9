//! Shared helpers for the fake's integration tests: a started fake plus a blocking HTTP client
//! that knows the account, the token and the D1 paths.
#![allow(dead_code)]

use std::time::Duration;

use fake_d1::{FakeD1, Options};
use serde_json::Value;

pub const TOKEN: &str = "test-token";

pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// `errors[0].code` and `errors[0].message` of a failure envelope.
    pub fn error(&self) -> (i64, String) {
        let v = self.json();
        assert_eq!(v["success"], Value::Bool(false), "{}", self.text);
        (
            v["errors"][0]["code"].as_i64().unwrap_or_default(),
            v["errors"][0]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }
}

pub struct Harness {
    pub fake: FakeD1,
    pub http: reqwest::blocking::Client,
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with(Options::default())
    }

    pub fn with(options: Options) -> Harness {
        let fake = FakeD1::start(options);
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Harness { fake, http }
    }

    /// `<base>/accounts/<acct>/d1/database<suffix>`.
    pub fn db_url(&self, suffix: &str) -> String {
        format!(
            "{}/accounts/{}/d1/database{suffix}",
            self.fake.base_url(),
            self.fake.account_id()
        )
    }

    pub fn send(&self, req: reqwest::blocking::RequestBuilder) -> Resp {
        let res = req.send().expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let text = res.text().expect("body");
        Resp {
            status,
            content_type,
            headers,
            text,
        }
    }

    pub fn get(&self, url: &str) -> Resp {
        self.send(self.http.get(url).bearer_auth(TOKEN))
    }

    pub fn post(&self, url: &str, body: &str) -> Resp {
        self.send(
            self.http
                .post(url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    }

    /// POST `…/{db}/{endpoint}` with a JSON body.
    pub fn call(&self, db: &str, endpoint: &str, body: &Value) -> Resp {
        self.post(
            &self.db_url(&format!("/{db}/{endpoint}")),
            &body.to_string(),
        )
    }

    pub fn raw(&self, db: &str, sql: &str) -> Resp {
        self.call(db, "raw", &serde_json::json!({ "sql": sql }))
    }

    pub fn query(&self, db: &str, sql: &str) -> Resp {
        self.call(db, "query", &serde_json::json!({ "sql": sql }))
    }

    /// The rows of the first result of a successful `/raw`, exactly as on the wire.
    pub fn raw_rows(&self, db: &str, sql: &str) -> String {
        let r = self.raw(db, sql);
        assert_eq!(r.status, 200, "{}", r.text);
        let start = r.text.find("\"rows\":").expect("rows") + "\"rows\":".len();
        let end = r
            .text
            .find("},\"success\":true,\"meta\"")
            .expect("end of rows");
        r.text[start..end].to_string()
    }

    pub fn bookmark(&self, db: &str) -> String {
        let r = self.get(&self.db_url(&format!("/{db}/time_travel/bookmark")));
        assert_eq!(r.status, 200, "{}", r.text);
        r.json()["result"]["bookmark"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}
