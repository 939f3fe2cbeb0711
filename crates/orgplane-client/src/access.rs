//! The typed methods of `AccessService`: custom roles and the permission catalog,
//! invitations, integrations, phone numbers and the audit log. Same rules as [`Client`]'s
//! other methods: every write has a short form (a fresh [`RequestId`]) and a
//! `_with_request_id` form, and is retried with that one id; reads are retried freely.
//!
//! Integration configuration goes out as the model's [`ConfigEntry`], whose secret values
//! print as `<redacted>`, so a secret the caller passes never shows in a `Debug` of the call.

use orgplane_model::{AuditFilter, ConfigEntry, Permission, Role};
use orgplane_proto::conv::config_entries_to_wire;
use orgplane_proto::v1;

use crate::client::{collect_pages, required, Client};
use crate::error::ClientError;
use crate::types::{non_empty, Consistency, OrgRef, Page, PageRequest, RequestId};

fn permission_names(permissions: &[Permission]) -> Vec<String> {
    permissions.iter().map(|p| p.to_string()).collect()
}

fn page_of<T>(items: Vec<T>, next_page_token: String, read: Option<v1::ReadInfo>) -> Page<T> {
    Page { items, next_page_token: non_empty(next_page_token), read }
}

impl Client {
    // ---------------------------------------------------------------------------- roles

    /// Defines the custom role `name` in `org` with `permissions`.
    pub async fn create_role(
        &self,
        org: impl OrgRef,
        name: &str,
        permissions: &[Permission],
    ) -> Result<v1::Role, ClientError> {
        self.create_role_with_request_id(org, name, permissions, &RequestId::generate()).await
    }

    /// [`Client::create_role`] with the caller's request id.
    pub async fn create_role_with_request_id(
        &self,
        org: impl OrgRef,
        name: &str,
        permissions: &[Permission],
        request_id: &RequestId,
    ) -> Result<v1::Role, ClientError> {
        let message = v1::CreateRoleRequest {
            org_id: org.org_id_text(),
            name: name.to_string(),
            permissions: permission_names(permissions),
            request_id: request_id.to_string(),
        };
        let response =
            self.write_on(&self.access, "create_role", request_id, message, |mut c, r| async move {
                c.create_role(r).await
            })
            .await?;
        required("create_role", "role", response.role)
    }

    /// Replaces the permissions of the custom role `name`; with `expected_version`, only if
    /// the role is still at that version (else ABORTED).
    pub async fn update_role(
        &self,
        org: impl OrgRef,
        name: &str,
        permissions: &[Permission],
        expected_version: Option<u64>,
    ) -> Result<v1::Role, ClientError> {
        self.update_role_with_request_id(org, name, permissions, expected_version, &RequestId::generate()).await
    }

    /// [`Client::update_role`] with the caller's request id.
    pub async fn update_role_with_request_id(
        &self,
        org: impl OrgRef,
        name: &str,
        permissions: &[Permission],
        expected_version: Option<u64>,
        request_id: &RequestId,
    ) -> Result<v1::Role, ClientError> {
        let message = v1::UpdateRoleRequest {
            org_id: org.org_id_text(),
            name: name.to_string(),
            permissions: permission_names(permissions),
            expected_version,
            request_id: request_id.to_string(),
        };
        let response =
            self.write_on(&self.access, "update_role", request_id, message, |mut c, r| async move {
                c.update_role(r).await
            })
            .await?;
        required("update_role", "role", response.role)
    }

    /// Deletes the custom role `name`; FAILED_PRECONDITION while it is in use.
    pub async fn delete_role(&self, org: impl OrgRef, name: &str) -> Result<(), ClientError> {
        self.delete_role_with_request_id(org, name, &RequestId::generate()).await
    }

    /// [`Client::delete_role`] with the caller's request id.
    pub async fn delete_role_with_request_id(
        &self,
        org: impl OrgRef,
        name: &str,
        request_id: &RequestId,
    ) -> Result<(), ClientError> {
        let message = v1::DeleteRoleRequest {
            org_id: org.org_id_text(),
            name: name.to_string(),
            request_id: request_id.to_string(),
        };
        self.write_on(
            &self.access,
            "delete_role",
            request_id,
            message,
            |mut c, r| async move { c.delete_role(r).await },
        )
        .await?;
        Ok(())
    }

    /// One page of the roles of `org`: the built-in ones on the first page, then custom roles.
    pub async fn list_roles(&self, org: impl OrgRef, page: PageRequest) -> Result<Page<v1::Role>, ClientError> {
        let message = v1::ListRolesRequest {
            org_id: org.org_id_text(),
            page_size: page.page_size,
            page_token: page.token_for_wire(),
            consistency: page.consistency.to_wire(),
        };
        let response =
            self.read_on(&self.access, "list_roles", message, |mut c, r| async move { c.list_roles(r).await }).await?;
        Ok(page_of(response.roles, response.next_page_token, response.read))
    }

    /// Every role of `org`, following the pages.
    pub async fn list_all_roles(
        &self,
        org: impl OrgRef,
        consistency: Consistency,
    ) -> Result<Page<v1::Role>, ClientError> {
        let org = org.org_id_text();
        collect_pages("list_roles", consistency, |page| self.list_roles(org.as_str(), page)).await
    }

    /// The catalog of permissions, with the built-in roles that hold each.
    pub async fn list_permissions(&self) -> Result<Vec<v1::PermissionInfo>, ClientError> {
        let response = self
            .read_on(&self.access, "list_permissions", v1::ListPermissionsRequest {}, |mut c, r| async move {
                c.list_permissions(r).await
            })
            .await?;
        Ok(response.permissions)
    }

    // ---------------------------------------------------------------------- invitations

    /// Invites `email` into `org` as `role`; expires at `expire_time_ms` (ms since the
    /// epoch), or after 7 days.
    pub async fn create_invitation(
        &self,
        org: impl OrgRef,
        email: &str,
        role: Role,
        expire_time_ms: Option<u64>,
    ) -> Result<v1::Invitation, ClientError> {
        self.create_invitation_with_request_id(org, email, role, expire_time_ms, &RequestId::generate()).await
    }

    /// [`Client::create_invitation`] with the caller's request id.
    pub async fn create_invitation_with_request_id(
        &self,
        org: impl OrgRef,
        email: &str,
        role: Role,
        expire_time_ms: Option<u64>,
        request_id: &RequestId,
    ) -> Result<v1::Invitation, ClientError> {
        let message = v1::CreateInvitationRequest {
            org_id: org.org_id_text(),
            email: email.to_string(),
            role: role.to_string(),
            expire_time_ms,
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.access, "create_invitation", request_id, message, |mut c, r| async move {
                c.create_invitation(r).await
            })
            .await?;
        required("create_invitation", "invitation", response.invitation)
    }

    /// One page of the invitations of `org` (every status), in email order.
    pub async fn list_invitations(
        &self,
        org: impl OrgRef,
        page: PageRequest,
    ) -> Result<Page<v1::Invitation>, ClientError> {
        let message = v1::ListInvitationsRequest {
            org_id: org.org_id_text(),
            page_size: page.page_size,
            page_token: page.token_for_wire(),
            consistency: page.consistency.to_wire(),
        };
        let response = self
            .read_on(&self.access, "list_invitations", message, |mut c, r| async move { c.list_invitations(r).await })
            .await?;
        Ok(page_of(response.invitations, response.next_page_token, response.read))
    }

    /// Every invitation of `org`, following the pages.
    pub async fn list_all_invitations(
        &self,
        org: impl OrgRef,
        consistency: Consistency,
    ) -> Result<Page<v1::Invitation>, ClientError> {
        let org = org.org_id_text();
        collect_pages("list_invitations", consistency, |page| self.list_invitations(org.as_str(), page)).await
    }

    /// Revokes the pending invitation of `email`.
    pub async fn revoke_invitation(&self, org: impl OrgRef, email: &str) -> Result<v1::Invitation, ClientError> {
        self.revoke_invitation_with_request_id(org, email, &RequestId::generate()).await
    }

    /// [`Client::revoke_invitation`] with the caller's request id.
    pub async fn revoke_invitation_with_request_id(
        &self,
        org: impl OrgRef,
        email: &str,
        request_id: &RequestId,
    ) -> Result<v1::Invitation, ClientError> {
        let message = v1::RevokeInvitationRequest {
            org_id: org.org_id_text(),
            email: email.to_string(),
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.access, "revoke_invitation", request_id, message, |mut c, r| async move {
                c.revoke_invitation(r).await
            })
            .await?;
        required("revoke_invitation", "invitation", response.invitation)
    }

    /// Accepts the invitation into `org` addressed to the verified email of this client's
    /// token; returns the new membership.
    pub async fn accept_invitation(&self, org: impl OrgRef) -> Result<v1::Member, ClientError> {
        self.accept_invitation_with_request_id(org, &RequestId::generate()).await
    }

    /// [`Client::accept_invitation`] with the caller's request id.
    pub async fn accept_invitation_with_request_id(
        &self,
        org: impl OrgRef,
        request_id: &RequestId,
    ) -> Result<v1::Member, ClientError> {
        let message = v1::AcceptInvitationRequest { org_id: org.org_id_text(), request_id: request_id.to_string() };
        let response = self
            .write_on(&self.access, "accept_invitation", request_id, message, |mut c, r| async move {
                c.accept_invitation(r).await
            })
            .await?;
        required("accept_invitation", "member", response.member)
    }

    // --------------------------------------------------------------------- integrations

    /// Creates the integration `name` of `kind` with `config` (secret entries are write-only).
    pub async fn create_integration(
        &self,
        org: impl OrgRef,
        name: &str,
        kind: &str,
        config: &[ConfigEntry],
    ) -> Result<v1::Integration, ClientError> {
        self.create_integration_with_request_id(org, name, kind, config, &RequestId::generate()).await
    }

    /// [`Client::create_integration`] with the caller's request id.
    pub async fn create_integration_with_request_id(
        &self,
        org: impl OrgRef,
        name: &str,
        kind: &str,
        config: &[ConfigEntry],
        request_id: &RequestId,
    ) -> Result<v1::Integration, ClientError> {
        let message = v1::CreateIntegrationRequest {
            org_id: org.org_id_text(),
            name: name.to_string(),
            kind: kind.to_string(),
            config: config_entries_to_wire(config),
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.access, "create_integration", request_id, message, |mut c, r| async move {
                c.create_integration(r).await
            })
            .await?;
        required("create_integration", "integration", response.integration)
    }

    /// Reads one integration (secret keys flagged, without values).
    pub async fn get_integration(
        &self,
        org: impl OrgRef,
        name: &str,
        consistency: Consistency,
    ) -> Result<v1::Integration, ClientError> {
        let message = v1::GetIntegrationRequest {
            org_id: org.org_id_text(),
            name: name.to_string(),
            consistency: consistency.to_wire(),
        };
        let response = self
            .read_on(&self.access, "get_integration", message, |mut c, r| async move { c.get_integration(r).await })
            .await?;
        required("get_integration", "integration", response.integration)
    }

    /// One page of the integrations of `org`, in name order.
    pub async fn list_integrations(
        &self,
        org: impl OrgRef,
        page: PageRequest,
    ) -> Result<Page<v1::Integration>, ClientError> {
        let message = v1::ListIntegrationsRequest {
            org_id: org.org_id_text(),
            page_size: page.page_size,
            page_token: page.token_for_wire(),
            consistency: page.consistency.to_wire(),
        };
        let response = self
            .read_on(&self.access, "list_integrations", message, |mut c, r| async move { c.list_integrations(r).await })
            .await?;
        Ok(page_of(response.integrations, response.next_page_token, response.read))
    }

    /// Every integration of `org`, following the pages.
    pub async fn list_all_integrations(
        &self,
        org: impl OrgRef,
        consistency: Consistency,
    ) -> Result<Page<v1::Integration>, ClientError> {
        let org = org.org_id_text();
        collect_pages("list_integrations", consistency, |page| self.list_integrations(org.as_str(), page)).await
    }

    /// Writes the `set` keys and drops the `remove` keys of integration `name`; other keys
    /// keep their values.
    pub async fn update_integration(
        &self,
        org: impl OrgRef,
        name: &str,
        set: &[ConfigEntry],
        remove: &[String],
        expected_version: Option<u64>,
    ) -> Result<v1::Integration, ClientError> {
        self.update_integration_with_request_id(org, name, set, remove, expected_version, &RequestId::generate()).await
    }

    /// [`Client::update_integration`] with the caller's request id.
    pub async fn update_integration_with_request_id(
        &self,
        org: impl OrgRef,
        name: &str,
        set: &[ConfigEntry],
        remove: &[String],
        expected_version: Option<u64>,
        request_id: &RequestId,
    ) -> Result<v1::Integration, ClientError> {
        let message = v1::UpdateIntegrationRequest {
            org_id: org.org_id_text(),
            name: name.to_string(),
            set: config_entries_to_wire(set),
            remove: remove.to_vec(),
            expected_version,
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.access, "update_integration", request_id, message, |mut c, r| async move {
                c.update_integration(r).await
            })
            .await?;
        required("update_integration", "integration", response.integration)
    }

    /// Deletes the integration `name`.
    pub async fn delete_integration(&self, org: impl OrgRef, name: &str) -> Result<(), ClientError> {
        self.delete_integration_with_request_id(org, name, &RequestId::generate()).await
    }

    /// [`Client::delete_integration`] with the caller's request id.
    pub async fn delete_integration_with_request_id(
        &self,
        org: impl OrgRef,
        name: &str,
        request_id: &RequestId,
    ) -> Result<(), ClientError> {
        let message = v1::DeleteIntegrationRequest {
            org_id: org.org_id_text(),
            name: name.to_string(),
            request_id: request_id.to_string(),
        };
        self.write_on(&self.access, "delete_integration", request_id, message, |mut c, r| async move {
            c.delete_integration(r).await
        })
        .await?;
        Ok(())
    }

    // -------------------------------------------------------------------- phone numbers

    /// Adds the E.164 `number` to `org` with a `label` (may be empty).
    pub async fn create_phone_number(
        &self,
        org: impl OrgRef,
        number: &str,
        label: &str,
    ) -> Result<v1::PhoneNumber, ClientError> {
        self.create_phone_number_with_request_id(org, number, label, &RequestId::generate()).await
    }

    /// [`Client::create_phone_number`] with the caller's request id.
    pub async fn create_phone_number_with_request_id(
        &self,
        org: impl OrgRef,
        number: &str,
        label: &str,
        request_id: &RequestId,
    ) -> Result<v1::PhoneNumber, ClientError> {
        let message = v1::CreatePhoneNumberRequest {
            org_id: org.org_id_text(),
            number: number.to_string(),
            label: label.to_string(),
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.access, "create_phone_number", request_id, message, |mut c, r| async move {
                c.create_phone_number(r).await
            })
            .await?;
        required("create_phone_number", "phone_number", response.phone_number)
    }

    /// Reads one phone number of `org`.
    pub async fn get_phone_number(
        &self,
        org: impl OrgRef,
        number: &str,
        consistency: Consistency,
    ) -> Result<v1::PhoneNumber, ClientError> {
        let message = v1::GetPhoneNumberRequest {
            org_id: org.org_id_text(),
            number: number.to_string(),
            consistency: consistency.to_wire(),
        };
        let response = self
            .read_on(&self.access, "get_phone_number", message, |mut c, r| async move { c.get_phone_number(r).await })
            .await?;
        required("get_phone_number", "phone_number", response.phone_number)
    }

    /// One page of the phone numbers of `org`, in number order.
    pub async fn list_phone_numbers(
        &self,
        org: impl OrgRef,
        page: PageRequest,
    ) -> Result<Page<v1::PhoneNumber>, ClientError> {
        let message = v1::ListPhoneNumbersRequest {
            org_id: org.org_id_text(),
            page_size: page.page_size,
            page_token: page.token_for_wire(),
            consistency: page.consistency.to_wire(),
        };
        let response =
            self.read_on(&self.access, "list_phone_numbers", message, |mut c, r| async move {
                c.list_phone_numbers(r).await
            })
            .await?;
        Ok(page_of(response.phone_numbers, response.next_page_token, response.read))
    }

    /// Every phone number of `org`, following the pages.
    pub async fn list_all_phone_numbers(
        &self,
        org: impl OrgRef,
        consistency: Consistency,
    ) -> Result<Page<v1::PhoneNumber>, ClientError> {
        let org = org.org_id_text();
        collect_pages("list_phone_numbers", consistency, |page| self.list_phone_numbers(org.as_str(), page)).await
    }

    /// Changes the label of `number`.
    pub async fn update_phone_number(
        &self,
        org: impl OrgRef,
        number: &str,
        label: &str,
        expected_version: Option<u64>,
    ) -> Result<v1::PhoneNumber, ClientError> {
        self.update_phone_number_with_request_id(org, number, label, expected_version, &RequestId::generate()).await
    }

    /// [`Client::update_phone_number`] with the caller's request id.
    pub async fn update_phone_number_with_request_id(
        &self,
        org: impl OrgRef,
        number: &str,
        label: &str,
        expected_version: Option<u64>,
        request_id: &RequestId,
    ) -> Result<v1::PhoneNumber, ClientError> {
        let message = v1::UpdatePhoneNumberRequest {
            org_id: org.org_id_text(),
            number: number.to_string(),
            label: label.to_string(),
            expected_version,
            request_id: request_id.to_string(),
        };
        let response = self
            .write_on(&self.access, "update_phone_number", request_id, message, |mut c, r| async move {
                c.update_phone_number(r).await
            })
            .await?;
        required("update_phone_number", "phone_number", response.phone_number)
    }

    /// Removes `number` from `org`.
    pub async fn delete_phone_number(&self, org: impl OrgRef, number: &str) -> Result<(), ClientError> {
        self.delete_phone_number_with_request_id(org, number, &RequestId::generate()).await
    }

    /// [`Client::delete_phone_number`] with the caller's request id.
    pub async fn delete_phone_number_with_request_id(
        &self,
        org: impl OrgRef,
        number: &str,
        request_id: &RequestId,
    ) -> Result<(), ClientError> {
        let message = v1::DeletePhoneNumberRequest {
            org_id: org.org_id_text(),
            number: number.to_string(),
            request_id: request_id.to_string(),
        };
        self.write_on(&self.access, "delete_phone_number", request_id, message, |mut c, r| async move {
            c.delete_phone_number(r).await
        })
        .await?;
        Ok(())
    }

    // ------------------------------------------------------------------------ audit log

    /// One page of the audit log of `org` in time order, filtered by `filter` (time range and
    /// actor). A page may be short while more follow: go on while `next_page_token` is set.
    pub async fn list_audit_events(
        &self,
        org: impl OrgRef,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<v1::AuditEvent>, ClientError> {
        let message = v1::ListAuditEventsRequest {
            org_id: org.org_id_text(),
            since_ms: filter.from_ms,
            until_ms: filter.to_ms,
            actor: filter.actor_subject.clone().unwrap_or_default(),
            page_size: page.page_size,
            page_token: page.token_for_wire(),
            consistency: page.consistency.to_wire(),
        };
        let response = self
            .read_on(&self.access, "list_audit_events", message, |mut c, r| async move { c.list_audit_events(r).await })
            .await?;
        Ok(page_of(response.events, response.next_page_token, response.read))
    }

    /// Every audit event of `org` that `filter` selects, following the pages.
    pub async fn list_all_audit_events(
        &self,
        org: impl OrgRef,
        filter: &AuditFilter,
        consistency: Consistency,
    ) -> Result<Page<v1::AuditEvent>, ClientError> {
        let org = org.org_id_text();
        collect_pages("list_audit_events", consistency, |page| self.list_audit_events(org.as_str(), filter, page)).await
    }

    // ------------------------------------------------------------------------- plumbing
}
