//! The user run (A3): reads the Alarm.com users (reps) in one list, then a
//! chunk at a time matches each against billing (imported before, same login
//! name, same Alarm.com id) before creating it, announcing users who may log
//! in so their credentials get sent.

use std::collections::{HashMap, HashSet};

use super::{run_error, store_failed, ImportRunError, Run};
use crate::adc::AdcRep;
use crate::billing::BillingId;
use crate::events::{types, NewEvent};
use crate::import::mapping::{user_billing_id, user_external_id, user_fields};
use crate::import::{
    ImportCounts, ImportKind, ImportWrite, RecordOutcome, UserFilters, UserOptions,
};

impl Run<'_> {
    pub(super) async fn users(
        self,
        filters: &UserFilters,
        options: &UserOptions,
    ) -> Result<ImportCounts, ImportRunError> {
        let reps = self
            .adc
            .reps()
            .await
            .map_err(|e| run_error("listing the Alarm.com users", e))?;
        let mut seen_ids = HashSet::with_capacity(reps.len());
        let reps: Vec<(String, AdcRep)> = reps
            .into_iter()
            .map(|r| (user_external_id(&r), r))
            .filter(|(id, _)| seen_ids.insert(id.clone()))
            .collect();
        let total = reps.len() as u64;
        let todo: Vec<&(String, AdcRep)> = reps
            .iter()
            .filter(|(id, _)| !self.done.contains(id))
            .collect();
        let logins = self.billing_user_logins().await?;
        let mut counts = self.import.counts;
        self.report(counts, total).await?;
        for chunk in todo.chunks(self.settings.chunk) {
            let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
            let before: HashMap<String, BillingId> = self
                .ports
                .imports
                .imported_records(
                    self.dealer,
                    self.import.connection_id,
                    ImportKind::Users,
                    &ids,
                )
                .await
                .map_err(store_failed)?
                .into_iter()
                .collect();
            // Billing users that already carry the id an import would give.
            let own_ids: Vec<String> = chunk
                .iter()
                .filter_map(|(_, rep)| user_billing_id(rep).ok())
                .map(|id| id.as_str().to_owned())
                .collect();
            let existing: HashSet<BillingId> = self
                .ports
                .imports
                .billing_users_among(self.dealer, &own_ids)
                .await
                .map_err(store_failed)?
                .into_iter()
                .collect();
            let outcomes = chunk
                .iter()
                .map(|(external_id, rep)| {
                    self.user_outcome(
                        external_id.clone(),
                        rep,
                        filters,
                        options,
                        &before,
                        &logins,
                        &existing,
                    )
                })
                .collect();
            counts = self.record(outcomes).await?;
            self.report(counts, total).await?;
        }
        Ok(counts)
    }

    #[allow(clippy::too_many_arguments)]
    fn user_outcome(
        &self,
        external_id: String,
        rep: &AdcRep,
        filters: &UserFilters,
        options: &UserOptions,
        before: &HashMap<String, BillingId>,
        logins: &HashMap<String, BillingId>,
        existing: &HashSet<BillingId>,
    ) -> RecordOutcome {
        if let Err(reason) = filters.check(rep) {
            return RecordOutcome::FilteredOut {
                external_id,
                reason,
            };
        }
        if let Some(billing_id) = before.get(&external_id) {
            return RecordOutcome::AlreadyImported {
                external_id,
                billing_id: billing_id.clone(),
            };
        }
        // A billing user with the login name is that user already: no duplicate.
        let login = rep.login_name.trim().to_lowercase();
        if let Some(billing_id) = logins.get(&login).filter(|_| !login.is_empty()) {
            let how = format!(
                "matched by its login name '{}': billing user '{billing_id}'",
                rep.login_name.trim()
            );
            return self.matched(external_id, billing_id.clone(), how, None);
        }
        let id = match user_billing_id(rep) {
            Ok(id) => id,
            Err(reason) => {
                return RecordOutcome::Failed {
                    external_id,
                    reason,
                }
            }
        };
        // So is a billing user that carries the user's Alarm.com id.
        if existing.contains(&id) {
            let how = format!("matched by its Alarm.com id: billing user '{id}'");
            return self.matched(external_id, id, how, None);
        }
        let fields = user_fields(rep, options);
        if fields.first_name.trim().is_empty() && fields.last_name.trim().is_empty() {
            return RecordOutcome::Failed {
                external_id,
                reason: "the Alarm.com user has no name".to_owned(),
            };
        }
        let mut events = vec![NewEvent {
            event_type: types::BILLING_USER_CREATED.into(),
            subject_kind: "user".into(),
            subject_id: id.to_string(),
            connection_id: Some(self.import.connection_id),
            data: serde_json::json!({
                "record": fields,
                "source": "adc_import",
                "import_id": self.import.id,
                "adc_support_id": rep.support_id,
            }),
        }];
        if fields.can_login {
            events.push(NewEvent {
                event_type: types::BILLING_USER_CREDENTIALS_REQUIRED.into(),
                subject_kind: "user".into(),
                subject_id: id.to_string(),
                connection_id: Some(self.import.connection_id),
                data: serde_json::json!({
                    "user_id": id,
                    "login_name": fields.login_name,
                    "email": fields.email,
                    "first_name": fields.first_name,
                    "last_name": fields.last_name,
                    "reason": "imported from Alarm.com with the right to log in: send the user a username and password",
                    "import_id": self.import.id,
                }),
            });
        }
        self.imported(external_id, ImportWrite::User { id, fields }, events, None)
    }
}
