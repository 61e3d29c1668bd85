//! The OpenAPI 3.1 document, generated from the handlers' annotations. The
//! committed copy at `openapi/openapi.json` is checked against it by a test.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::openapi_examples::Examples;
use crate::openapi_problems::{CommonProblems, ProblemCodes};

use crate::routes::{
    audit, batches, billing, conflicts, connections, events, health, imports, isp, jobs, links,
    provider_webhooks, providers, stages, stages_tab, stages_tab_edits, sync, webhooks, wizard,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "crosslink",
        description = "Links a dealer's billing records to Stages and interactive services providers.",
        license(name = "MIT")
    ),
    paths(
        health::healthz,
        health::readyz,
        health::metrics,
        providers::list_providers,
        connections::list_connections,
        connections::create_connection,
        connections::get_connection,
        connections::update_connection,
        connections::delete_connection,
        connections::test_connection,
        connections::put_dealer_credentials,
        connections::put_my_credentials,
        connections::get_my_credentials,
        connections::delete_my_credentials,
        connections::get_inbound_credentials,
        connections::rotate_inbound_credentials,
        connections::service_plans,
        stages::lookup,
        stages::list_sites,
        stages::get_site,
        stages::get_device,
        stages_tab::site_devices,
        stages_tab::site_notes,
        stages_tab::site_contacts,
        stages_tab::site_history,
        stages_tab::create_contact,
        stages_tab::update_contact,
        stages_tab::edit_device,
        stages_tab::device_configurations,
        stages_tab::create_configuration,
        stages_tab::device_history,
        stages_tab::device_tests,
        stages_tab::start_test,
        stages_tab::end_test,
        stages_tab::site_tests,
        stages_tab_edits::delete_contact,
        stages_tab_edits::update_zone,
        stages_tab_edits::clear_site_tests,
        billing::search_customers,
        billing::put_customer,
        billing::get_customer,
        billing::delete_customer,
        billing::put_site,
        billing::get_site,
        billing::delete_site,
        billing::push_targets,
        billing::put_system,
        billing::get_system,
        billing::delete_system,
        billing::put_user,
        billing::get_user,
        billing::delete_user,
        links::push,
        links::create_link,
        links::list_links,
        links::get_link,
        links::edit_link,
        links::unlink,
        links::reconcile,
        wizard::pull,
        wizard::push,
        jobs::get_job,
        jobs::list_jobs,
        jobs::retry_job,
        jobs::cancel_job,
        audit::list_audit,
        sync::diff,
        sync::sync_link,
        sync::account_sync,
        conflicts::list_conflicts,
        conflicts::resolve_conflicts,
        events::list_events,
        events::create_subscription,
        events::list_subscriptions,
        events::get_subscription,
        events::update_subscription,
        events::delete_subscription,
        webhooks::stages_callback,
        imports::start_import,
        imports::filter_choices,
        imports::list_imports,
        imports::get_import,
        imports::import_items,
        imports::cancel_import,
        batches::start_batch,
        batches::list_batches,
        batches::get_batch,
        batches::batch_items,
        batches::cancel_batch,
        isp::create_isp_account,
        isp::list_isp_accounts,
        isp::get_isp_account,
        isp::change_service_plan,
        isp::builder_programs,
        isp::callback_health,
        isp::billing_notifications,
        provider_webhooks::alarm_com_billing,
        provider_webhooks::alarmnet_callback,
        crate::problem_codes::problems_index,
        crate::problem_codes::problem_page,
    ),
    components(schemas(
        crate::problem::Problem,
        crate::problem::ProblemField,
        crate::dto::LookupListName
    )),
    modifiers(&BearerAuth, &CommonProblems, &ProblemCodes, &Examples),
    tags(
        (name = "connections", description = "Upstream connections and their credentials"),
        (name = "billing", description = "The service's copy of the billing system's records"),
        (name = "stages", description = "Stages records, read live through a connection"),
        (name = "links", description = "Push, link, edit link, unlink, mappings, reconcile, audit"),
        (name = "jobs", description = "Background work and its progress"),
        (name = "batches", description = "Many links, pushes, syncs or tests in one background job (B7)"),
        (name = "imports", description = "Alarm.com customer and user imports"),
        (name = "sync", description = "Diff, record sync and account sync of a link"),
        (name = "events", description = "The change feed and signed outbound webhooks"),
        (name = "webhooks", description = "Callbacks the service receives"),
        (name = "isp", description = "Interactive services provider accounts and callback health"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "stages_basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT with `sub`, `dealer`, `roles`, `exp`, `iss` and `aud`. Each \
                         operation's security requirement names the role it needs \
                         (`viewer` < `operator` < `admin`; a higher role also passes).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON with a trailing newline, exactly as committed.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut s = doc.to_pretty_json().expect("the document serialises");
    s.push('\n');
    s
}

/// The methods the API document lists for the route `path` matches (for
/// `Allow` on a 405), in alphabetical order. A `{name}` segment matches any
/// segment; `{name}:verb` any segment ending in `:verb`.
pub fn allowed_methods(path: &str) -> Vec<String> {
    static ROUTES: std::sync::OnceLock<Vec<(Vec<String>, Vec<String>)>> =
        std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let doc: serde_json::Value =
            serde_json::from_str(&document()).expect("the document is JSON");
        let mut routes = Vec::new();
        for (template, operations) in doc["paths"].as_object().into_iter().flatten() {
            let segments = template.split('/').map(str::to_owned).collect();
            let methods = operations
                .as_object()
                .into_iter()
                .flatten()
                .map(|(m, _)| m.to_uppercase())
                .collect();
            routes.push((segments, methods));
        }
        routes
    });
    let segments: Vec<&str> = path.split('/').collect();
    let fits = |template: &[String]| {
        template.len() == segments.len()
            && template
                .iter()
                .zip(&segments)
                .all(|(t, s)| match (t.find('{'), t.rfind('}')) {
                    (Some(0), Some(end)) => s.ends_with(&t[end + 1..]),
                    _ => t == s,
                })
    };
    // A literal route wins over one with a parameter in its place.
    let mut matching: Vec<_> = routes.iter().filter(|(t, _)| fits(t)).collect();
    matching.sort_by_key(|(t, _)| t.iter().filter(|s| s.starts_with('{')).count());
    matching
        .first()
        .map(|(_, methods)| methods.clone())
        .unwrap_or_default()
}
