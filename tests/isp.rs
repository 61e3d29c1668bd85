//! End to end: interactive services provider entries and ISP accounts (I1,
//! I3, I5) against the Alarm.com SOAP simulator: provider settings checked
//! against the provider, ISP accounts created, recovered, linked and moved to
//! another plan, never twice for one billing customer, and the Builder
//! Program behind its flag and the login's permission.

mod support;

use adc_sim::Permissions;
use reqwest::Method;
use serde_json::{json, Value};
use support::*;

const ADC_USER: &str = "adc-dealer";
const ADC_PASSWORD: &str = "adc-Passw0rd";
const LIMITED_USER: &str = "adc-limited";
const LIMITED_PASSWORD: &str = "adc-Limited-1";

async fn adc_sim() -> adc_sim::Sim {
    let sim = adc_sim::Sim::start(adc_sim::SimConfig {
        username: ADC_USER.into(),
        password: ADC_PASSWORD.into(),
        seed_customers: 20,
        ..Default::default()
    })
    .await
    .expect("the Alarm.com simulator starts");
    sim.state().add_login(
        LIMITED_USER,
        LIMITED_PASSWORD,
        Permissions {
            builder_program: false,
            billing: false,
        },
    );
    sim
}

struct World {
    svc: Service,
    adc: adc_sim::Sim,
    admin: Who,
    op: Who,
    cid: String,
}

impl World {
    /// A service with an Alarm.com connection whose credentials are `user`'s.
    async fn start(backend: Backend, user: &str, password: &str) -> Self {
        let adc = adc_sim().await;
        let svc = Service::in_process(backend, Vec::new()).await;
        let admin = Who::admin("acme");
        let op = Who::new("acme", "op-1", "operator");
        let cid = alarm_com_connection(&svc, &admin, &adc, "Alarm.com", user, password).await;
        Self {
            svc,
            adc,
            admin,
            op,
            cid,
        }
    }

    async fn call(&self, method: Method, path: &str, who: &Who, body: Option<Value>) -> Answer {
        self.svc.call(method, path, who, body).await
    }

    async fn settings(&self, settings: Value) -> Answer {
        self.call(
            Method::PATCH,
            &format!("/v1/connections/{}", self.cid),
            &self.admin,
            Some(json!({ "settings": settings })),
        )
        .await
    }

    async fn customer(&self, id: &str, email: &str) {
        let a = self
            .call(
                Method::PUT,
                &format!("/v1/billing/customers/{id}"),
                &self.op,
                Some(json!({
                    "first_name": "Ada", "last_name": format!("Lovelace {id}"), "email": email,
                    "phone": "614-555-0101", "address1": "1 Main St", "city": "Columbus",
                    "state": "OH", "zip": "43004"
                })),
            )
            .await;
        assert!(a.status == 200 || a.status == 201, "{}", a.text);
    }

    fn accounts(&self) -> String {
        format!("/v1/connections/{}/isp-accounts", self.cid)
    }

    async fn provision(&self, body: Value) -> Answer {
        self.call(Method::POST, &self.accounts(), &self.op, Some(body))
            .await
    }

    async fn plans(&self) -> Vec<i64> {
        let a = self
            .call(
                Method::GET,
                &format!("/v1/connections/{}/service-plans", self.cid),
                &self.admin,
                None,
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["package_id"].as_i64().unwrap())
            .collect()
    }

    fn builder_program(&self) -> i64 {
        self.adc
            .state()
            .with_store(|s| s.builder_programs()[0].builder_program_id)
    }

    fn adc_customer(&self, external_id: &Value) -> adc_sim::Customer {
        let id: i64 = external_id.as_str().unwrap().parse().unwrap();
        self.adc
            .state()
            .customer(id)
            .expect("the account exists in Alarm.com")
    }
}

async fn alarm_com_connection(
    svc: &Service,
    admin: &Who,
    adc: &adc_sim::Sim,
    name: &str,
    user: &str,
    password: &str,
) -> String {
    let created = svc
        .call(
            Method::POST,
            "/v1/connections",
            admin,
            Some(json!({"provider": "alarm_com", "name": name, "endpoint": adc.base_url()})),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let cid = created.body["id"].as_str().unwrap().to_owned();
    let creds = svc
        .call(
            Method::PUT,
            &format!("/v1/connections/{cid}/credentials/dealer"),
            admin,
            Some(json!({"username": user, "password": password})),
        )
        .await;
    assert_eq!(creds.status, 200, "{}", creds.text);
    cid
}

async fn provider_settings_are_checked_against_the_provider(backend: Backend) {
    let w = World::start(backend, ADC_USER, ADC_PASSWORD).await;
    let plans = w.plans().await;
    assert!(plans.len() >= 2);
    let fresh = w
        .call(
            Method::GET,
            &format!("/v1/connections/{}", w.cid),
            &w.admin,
            None,
        )
        .await;
    assert_eq!(
        fresh.body["settings"],
        json!({"default_service_plan": null, "builder_program": false,
               "billing_notifications": false, "alarmnet_callback_url": null})
    );

    // Not one of the provider's plans: refused, naming the field.
    let bad = w.settings(json!({"default_service_plan": 999_999})).await;
    assert_eq!(bad.assert_problem(422), "validation");
    assert_eq!(
        bad.body["errors"][0]["field"],
        "settings.default_service_plan"
    );
    let ok = w.settings(json!({"default_service_plan": plans[1]})).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.body["settings"]["default_service_plan"], plans[1]);
    // Only admins change a provider entry.
    w.call(
        Method::PATCH,
        &format!("/v1/connections/{}", w.cid),
        &w.op,
        Some(json!({"settings": {"default_service_plan": plans[0]}})),
    )
    .await
    .assert_problem(403);
    // A stale ETag loses.
    let stale = w
        .call(
            Method::PATCH,
            &format!("/v1/connections/{}", w.cid),
            &w.admin,
            Some(json!({"settings": {"builder_program": true}})),
        )
        .await;
    assert_eq!(stale.status, 200, "{}", stale.text);
    let version = stale.body["version"].as_i64().unwrap();
    let r = w
        .svc
        .req(
            Method::PATCH,
            &format!("/v1/connections/{}", w.cid),
            &w.admin,
        )
        .header("If-Match", format!("\"{}\"", version - 1))
        .json(&json!({"settings": {"builder_program": false}}))
        .send()
        .await
        .unwrap();
    Answer::from(r).await.assert_problem(412);
    // Alarm.net callbacks are not an Alarm.com setting.
    let wrong = w
        .settings(json!({"alarmnet_callback_url": "https://hooks.example.com/x"}))
        .await;
    assert_eq!(wrong.assert_problem(409), "wrong_provider");
    // null clears; absent leaves alone.
    let cleared = w.settings(json!({"default_service_plan": null})).await;
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    assert_eq!(
        cleared.body["settings"]["default_service_plan"],
        Value::Null
    );
    assert_eq!(cleared.body["settings"]["builder_program"], true);

    // A login without the Builder Program or billing permission: a clear refusal, nothing changed.
    let limited = alarm_com_connection(
        &w.svc,
        &w.admin,
        &w.adc,
        "Alarm.com limited",
        LIMITED_USER,
        LIMITED_PASSWORD,
    )
    .await;
    let path = format!("/v1/connections/{limited}");
    let builder = w
        .call(
            Method::PATCH,
            &path,
            &w.admin,
            Some(json!({"settings": {"builder_program": true}})),
        )
        .await;
    assert_eq!(builder.assert_problem(409), "provider_permission");
    assert!(
        builder.body["detail"]
            .as_str()
            .unwrap()
            .contains("Builder Program"),
        "{}",
        builder.text
    );
    let billing = w
        .call(
            Method::PATCH,
            &path,
            &w.admin,
            Some(json!({"settings": {"billing_notifications": true}})),
        )
        .await;
    assert_eq!(billing.assert_problem(409), "provider_permission");
    assert!(
        billing.body["detail"]
            .as_str()
            .unwrap()
            .contains("billing integration permission"),
        "{}",
        billing.text
    );
    let after = w.call(Method::GET, &path, &w.admin, None).await;
    assert_eq!(after.body["settings"]["builder_program"], false);
    assert_eq!(after.body["settings"]["billing_notifications"], false);

    // Total Connect takes an Alarm.net callback URL, but no Alarm.com plan.
    let tc = w
        .call(
            Method::POST,
            "/v1/connections",
            &w.admin,
            Some(json!({"provider": "total_connect", "endpoint": "https://tc.example.com/"})),
        )
        .await;
    assert_eq!(tc.status, 201, "{}", tc.text);
    let tc_path = format!("/v1/connections/{}", tc.body["id"].as_str().unwrap());
    let url = "https://crosslink.example.com/v1/webhooks/alarmnet/x";
    let set = w
        .call(
            Method::PATCH,
            &tc_path,
            &w.admin,
            Some(json!({"settings": {"alarmnet_callback_url": url}, "status": "inactive"})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(set.body["settings"]["alarmnet_callback_url"], url);
    assert_eq!(set.body["status"], "inactive");
    let bad_url = w
        .call(
            Method::PATCH,
            &tc_path,
            &w.admin,
            Some(json!({"settings": {"alarmnet_callback_url": "ftp://x"}})),
        )
        .await;
    assert_eq!(bad_url.assert_problem(422), "validation");
    let plan = w
        .call(
            Method::PATCH,
            &tc_path,
            &w.admin,
            Some(json!({"settings": {"default_service_plan": plans[0]}})),
        )
        .await;
    assert_eq!(plan.assert_problem(409), "wrong_provider");
}

async fn isp_accounts_are_made_once_and_change_plans(backend: Backend) {
    let w = World::start(backend, ADC_USER, ADC_PASSWORD).await;
    let plans = w.plans().await;
    w.customer("C-1", "ada1@example.com").await;
    w.customer("C-2", "ada2@example.com").await;
    w.customer("C-3", "ada3@example.com").await;
    w.customer("C-4", "ada4@example.com").await;
    let before = w.adc.state().customer_count();

    // No plan given and no default set: say how to fix it.
    let no_plan = w
        .provision(json!({"billing_customer_id": "C-1", "action": "create_customer"}))
        .await;
    assert_eq!(no_plan.assert_problem(422), "validation");
    assert_eq!(no_plan.body["errors"][0]["field"], "package_id");
    assert_eq!(
        w.settings(json!({"default_service_plan": plans[0]}))
            .await
            .status,
        200
    );

    // Create, with an Idempotency-Key: a retry replays the answer.
    let body =
        json!({"billing_customer_id": "C-1", "action": "create_customer", "login_name": "ada-c1"});
    let send = || {
        w.svc
            .req(Method::POST, &w.accounts(), &w.op)
            .header("Idempotency-Key", "create-c1")
            .json(&body)
            .send()
    };
    let created = Answer::from(send().await.unwrap()).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["origin"], "created");
    assert_eq!(created.body["state"], "active");
    assert_eq!(created.body["package_id"], plans[0]);
    let adc = w.adc_customer(&created.body["external_id"]);
    assert_eq!(adc.dealer_customer_id, "C-1");
    assert_eq!(adc.login_name, "ada-c1");
    assert_eq!(adc.last_name, "Lovelace C-1");
    assert_eq!(adc.install_address.street1, "1 Main St");
    assert_eq!(adc.package_id, plans[0]);
    let replay = Answer::from(send().await.unwrap()).await;
    assert_eq!(replay.status, 201);
    assert_eq!(replay.headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(replay.body["id"], created.body["id"]);
    // A second request without the key: refused, nothing made in Alarm.com.
    let again = w.provision(body.clone()).await;
    assert_eq!(again.assert_problem(409), "isp_account_exists");
    assert_eq!(w.adc.state().customer_count(), before + 1);

    // Two at once for one billing customer: one account, one Alarm.com customer.
    let race = |login: &'static str| {
        w.provision(
            json!({"billing_customer_id": "C-2", "action": "create_customer", "login_name": login}),
        )
    };
    let (a, b) = tokio::join!(race("ada-c2a"), race("ada-c2b"));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{} / {}", a.text, b.text);
    assert_eq!(w.adc.state().customer_count(), before + 2);

    // An account Alarm.com already holds for the billing id (an earlier create
    // whose answer was lost) is recovered, not made twice.
    let lost = w
        .adc
        .state()
        .with_store(|s| {
            s.add_customer(
                adc_sim::CustomerPatch {
                    dealer_customer_id: Some("C-3".into()),
                    ..Default::default()
                },
                chrono::Utc::now(),
            )
        })
        .unwrap();
    let count = w.adc.state().customer_count();
    let recovered = w
        .provision(json!({"billing_customer_id": "C-3", "action": "create_customer"}))
        .await;
    assert_eq!(recovered.status, 201, "{}", recovered.text);
    assert_eq!(recovered.body["origin"], "recovered");
    assert_eq!(recovered.body["external_id"], lost.customer_id.to_string());
    assert_eq!(w.adc.state().customer_count(), count);

    // Link an existing Alarm.com customer; it cannot be linked twice.
    let existing = w
        .adc
        .state()
        .customers()
        .into_iter()
        .find(|c| !c.is_terminated && !c.is_commitment && c.dealer_customer_id != "C-3")
        .unwrap();
    let linked = w
        .provision(json!({"billing_customer_id": "C-4", "action": "link", "customer_id": existing.customer_id}))
        .await;
    assert_eq!(linked.status, 201, "{}", linked.text);
    assert_eq!(linked.body["origin"], "linked");
    assert_eq!(linked.body["external_id"], existing.customer_id.to_string());
    w.customer("C-5", "ada5@example.com").await;
    let twice = w
        .provision(json!({"billing_customer_id": "C-5", "action": "link", "customer_id": existing.customer_id}))
        .await;
    assert_eq!(twice.assert_problem(409), "isp_account_exists");
    assert!(
        twice.body["detail"].as_str().unwrap().contains("C-4"),
        "{}",
        twice.text
    );
    let unknown = w
        .provision(
            json!({"billing_customer_id": "C-5", "action": "link", "customer_id": 999_999_999}),
        )
        .await;
    assert_eq!(unknown.assert_problem(422), "validation");
    assert_eq!(unknown.body["errors"][0]["field"], "customer_id");

    // Alarm.com refuses a login already taken: its reason, and no account kept.
    let taken = w
        .provision(json!({"billing_customer_id": "C-5", "action": "create_customer", "login_name": "ada-c1"}))
        .await;
    assert_eq!(taken.assert_problem(409), "provider_rejected");
    assert!(
        taken.body["detail"]
            .as_str()
            .unwrap()
            .contains("already in use"),
        "{}",
        taken.text
    );
    let none = w
        .call(
            Method::GET,
            &format!("{}?billing_customer_id=C-5", w.accounts()),
            &w.op,
            None,
        )
        .await;
    assert_eq!(none.body["items"], json!([]), "{}", none.text);
    // Nothing for a billing customer that does not exist, or an operator's wish of a viewer.
    let missing = w
        .provision(json!({"billing_customer_id": "C-404", "action": "create_customer"}))
        .await;
    assert_eq!(missing.body["errors"][0]["field"], "billing_customer_id");
    missing.assert_problem(422);
    w.call(
        Method::POST,
        &w.accounts(),
        &Who::new("acme", "v", "viewer"),
        Some(json!({"billing_customer_id": "C-5", "action": "create_customer"})),
    )
    .await
    .assert_problem(403);

    // Change the service plan at Alarm.com.
    let id = created.body["id"].as_str().unwrap();
    let change = format!("{}/{id}:change-service-plan", w.accounts());
    let moved = w
        .call(
            Method::POST,
            &change,
            &w.op,
            Some(json!({"package_id": plans[1]})),
        )
        .await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(moved.body["package_id"], plans[1]);
    assert_eq!(
        w.adc_customer(&created.body["external_id"]).package_id,
        plans[1]
    );
    let refused = w
        .call(
            Method::POST,
            &change,
            &w.op,
            Some(json!({"package_id": 999_999})),
        )
        .await;
    assert_eq!(refused.assert_problem(422), "validation");
    assert_eq!(
        w.adc_customer(&created.body["external_id"]).package_id,
        plans[1]
    );
    let stale = w
        .svc
        .req(Method::POST, &change, &w.op)
        .header("If-Match", format!("\"{}\"", created.body["version"]))
        .json(&json!({"package_id": plans[0]}))
        .send()
        .await
        .unwrap();
    Answer::from(stale).await.assert_problem(412);

    let one = w
        .call(Method::GET, &format!("{}/{id}", w.accounts()), &w.op, None)
        .await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["package_id"], plans[1]);
    let all = w.call(Method::GET, &w.accounts(), &w.op, None).await;
    assert_eq!(
        all.body["items"].as_array().unwrap().len(),
        4,
        "{}",
        all.text
    );
    // Another dealer sees none of it.
    let other = Who::admin("other");
    w.call(Method::GET, &format!("{}/{id}", w.accounts()), &other, None)
        .await
        .assert_problem(404);
}

async fn builder_program_needs_its_flag_and_the_permission(backend: Backend) {
    let w = World::start(backend, ADC_USER, ADC_PASSWORD).await;
    let plans = w.plans().await;
    let program = w.builder_program();
    w.customer("B-1", "b1@example.com").await;
    w.customer("B-2", "b2@example.com").await;
    w.customer("B-3", "b3@example.com").await;
    let commitment = |customer: &str| {
        json!({"billing_customer_id": customer, "action": "create_commitment",
               "builder_program_id": program, "package_id": plans[0]})
    };

    let off = w.provision(commitment("B-1")).await;
    assert_eq!(off.assert_problem(409), "builder_program_off");
    let without_program = w
        .provision(json!({"billing_customer_id": "B-1", "action": "create_commitment"}))
        .await;
    assert_eq!(
        without_program.body["errors"][0]["field"],
        "builder_program_id"
    );
    assert_eq!(
        w.settings(json!({"builder_program": true})).await.status,
        200
    );

    let made = w.provision(commitment("B-1")).await;
    assert_eq!(made.status, 201, "{}", made.text);
    assert_eq!(made.body["kind"], "commitment");
    assert!(made.body["commitment_id"].is_i64(), "{}", made.text);
    let adc = w.adc_customer(&made.body["external_id"]);
    assert!(adc.is_commitment);
    assert_eq!(adc.builder_program_id, program);
    assert_eq!(adc.dealer_customer_id, "B-1");

    let builder_customer = w
        .provision(
            json!({"billing_customer_id": "B-2", "action": "create_customer",
                          "builder_program_id": program, "package_id": plans[0]}),
        )
        .await;
    assert_eq!(builder_customer.status, 201, "{}", builder_customer.text);
    assert_eq!(builder_customer.body["kind"], "customer");
    assert_eq!(builder_customer.body["builder_program_id"], program);
    assert_eq!(
        w.adc_customer(&builder_customer.body["external_id"])
            .builder_program_id,
        program
    );

    // The login loses the permission: a clear refusal, nothing made, nothing kept.
    assert!(w
        .adc
        .state()
        .update_permissions(Some(ADC_USER), |p| p.builder_program = false));
    let count = w.adc.state().customer_count();
    let denied = w.provision(commitment("B-3")).await;
    assert_eq!(denied.assert_problem(409), "provider_permission");
    assert!(denied.body["detail"]
        .as_str()
        .unwrap()
        .contains("Builder Program"));
    assert_eq!(w.adc.state().customer_count(), count);
    let none = w
        .call(
            Method::GET,
            &format!("{}?billing_customer_id=B-3", w.accounts()),
            &w.op,
            None,
        )
        .await;
    assert_eq!(none.body["items"], json!([]));
    // A plain customer needs no Builder Program permission.
    let plain = w
        .provision(json!({"billing_customer_id": "B-3", "action": "create_customer", "package_id": plans[0]}))
        .await;
    assert_eq!(plain.status, 201, "{}", plain.text);
    assert_eq!(plain.body["login_name"], "b3@example.com");
}

/// Provisioning carries the central-station fields and two-way voice; an
/// add-on change reaches Alarm.com and reads back; the Builder Program list
/// comes from Alarm.com, kept briefly, and checks the program chosen.
async fn add_ons_both_ways_and_the_builder_program_list(backend: Backend) {
    let w = World::start(backend, ADC_USER, ADC_PASSWORD).await;
    let plans = w.plans().await;
    let a = w
        .call(
            Method::PUT,
            "/v1/billing/customers/V-1",
            &w.op,
            Some(json!({
                "first_name": "Vic", "last_name": "Voice", "email": "vic@example.com",
                "address1": "1 Main St", "city": "Columbus", "state": "OH", "zip": "43004",
                "two_way_voice": true, "account_number": "CS-1001",
                "receiver_number": "8005550188"
            })),
        )
        .await;
    assert!(a.status == 200 || a.status == 201, "{}", a.text);
    let made = w
        .provision(
            json!({"billing_customer_id": "V-1", "action": "create_customer",
            "package_id": plans[0]}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
    let held = w.adc_customer(&made.body["external_id"]);
    assert_eq!(held.central_station_account_number, "CS-1001");
    assert_eq!(held.central_station_receiver_number, "8005550188");
    assert_eq!(held.add_on_features, ["TwoWayVoice"]);

    let account = format!("{}/{}", w.accounts(), made.body["id"].as_str().unwrap());
    let shown = w.call(Method::GET, &account, &w.op, None).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(
        shown.body["provider"]["package_id"], plans[0],
        "{}",
        shown.text
    );
    assert_eq!(
        shown.body["provider"]["add_on_features"],
        json!(["TwoWayVoice"])
    );

    let change = format!("{account}:change-service-plan");
    let bad = w
        .call(
            Method::POST,
            &change,
            &w.op,
            Some(json!({"package_id": plans[1], "add_on_features": ["Teleporter"]})),
        )
        .await;
    assert_eq!(bad.assert_problem(422), "validation");
    assert_eq!(bad.body["errors"][0]["field"], "add_on_features[0]");
    let changed = w
        .call(
            Method::POST,
            &change,
            &w.op,
            Some(json!({"package_id": plans[1], "add_on_features": ["video", "Two-Way Voice"]})),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(changed.body["package_id"], plans[1]);
    assert_eq!(
        changed.body["provider"]["package_id"], plans[1],
        "{}",
        changed.text
    );
    assert_eq!(
        changed.body["provider"]["add_on_features"],
        json!(["Video", "TwoWayVoice"])
    );
    let held = w.adc_customer(&made.body["external_id"]);
    assert_eq!(held.add_on_features, ["Video", "TwoWayVoice"]);
    assert_eq!(held.package_id, plans[1]);
    // Only the plan: the add-ons stay.
    let kept = w
        .call(
            Method::POST,
            &change,
            &w.op,
            Some(json!({"package_id": plans[0]})),
        )
        .await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    assert_eq!(
        kept.body["provider"]["add_on_features"],
        json!(["Video", "TwoWayVoice"])
    );

    // The Builder Program list, from Alarm.com, read once for a while.
    let path = format!("/v1/connections/{}/builder-programs", w.cid);
    let list = w.call(Method::GET, &path, &w.op, None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let ids: Vec<i64> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["builder_program_id"].as_i64().unwrap())
        .collect();
    let known: Vec<i64> = w.adc.state().with_store(|s| {
        s.builder_programs()
            .iter()
            .map(|b| b.builder_program_id)
            .collect()
    });
    assert_eq!(ids, known);
    assert!(list.body["items"][0]["name"].is_string());
    let again = w.call(Method::GET, &path, &w.op, None).await;
    assert_eq!(again.body, list.body);
    assert_eq!(w.adc.state().request_count("GetBuilderProgramList"), 1);
    assert_eq!(
        w.settings(json!({"builder_program": true})).await.status,
        200
    );
    w.customer("V-2", "v2@example.com").await;
    let unknown = w
        .provision(
            json!({"billing_customer_id": "V-2", "action": "create_commitment",
            "builder_program_id": 999, "package_id": plans[0]}),
        )
        .await;
    assert_eq!(unknown.assert_problem(422), "validation");
    assert_eq!(unknown.body["errors"][0]["field"], "builder_program_id");
    assert!(
        unknown.text.contains(&known[0].to_string()),
        "{}",
        unknown.text
    );
    assert_eq!(w.adc.state().success_count("CreateCommitment"), 0);
    let made = w
        .provision(
            json!({"billing_customer_id": "V-2", "action": "create_commitment",
            "builder_program_id": known[0], "package_id": plans[0]}),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.text);
}

on_both_backends!(
    add_ons_both_ways_and_the_builder_program_list,
    provider_settings_are_checked_against_the_provider,
    isp_accounts_are_made_once_and_change_plans,
    builder_program_needs_its_flag_and_the_permission,
);
