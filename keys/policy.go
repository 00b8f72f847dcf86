// Package keys parses SSH public keys and decides who may do what.
//
// The whole access policy is Authorize: data (a Principal, an Action, a
// Target) in, allowed or ErrDenied out. Every command and git service asks it.
package keys

import (
	"errors"
)

// Role is what a key is for.
type Role string

const (
	RoleAdmin     Role = "admin"     // operator: everything
	RoleNamespace Role = "namespace" // a member of one namespace
	RoleDeploy    Role = "deploy"    // push and fetch one app
	// RoleBootstrap is a one-time key a new EC2 host uses to fetch its
	// agent and credentials; App names the host.
	RoleBootstrap Role = "bootstrap"
)

// Principal is who is acting: resolved from the key the client proved, or
// the local operator on the server box.
type Principal struct {
	Name        string // key name, or "local" for the operator at the console
	Fingerprint string // SHA256:..., empty for the local operator
	Role        Role
	Namespace   string // namespace and deploy keys
	App         string // deploy keys: the one app
}

// Local is the operator running admin commands on the server box itself.
var Local = Principal{Name: "local", Role: RoleAdmin}

// Action is something a principal asks to do.
type Action string

const (
	Help            Action = "help"
	NamespaceCreate Action = "namespace.create"
	NamespaceList   Action = "namespace.list"
	NamespaceDelete Action = "namespace.delete"
	NamespaceInfo   Action = "namespace.info"  // its quotas and what it uses
	NamespaceQuota  Action = "namespace.quota" // set its quotas
	AppCreate       Action = "app.create"
	AppList         Action = "app.list"
	AppInfo         Action = "app.info"
	AppSet          Action = "app.set"
	AppDelete       Action = "app.delete"
	AppRun          Action = "app.run"
	AppStop         Action = "app.stop"
	AppRestart      Action = "app.restart"
	AppPS           Action = "app.ps"
	AppLogs         Action = "app.logs"
	KeysAdd         Action = "keys.add"
	KeysAddAdmin    Action = "keys.add-admin"
	KeysList        Action = "keys.list"
	KeysRemove      Action = "keys.remove"
	RuntimesList    Action = "runtimes.list"
	HostsList       Action = "hosts.list"
	HostsManage     Action = "hosts.manage" // add, create, set, drain, remove, destroy, rebalance
	HostsBootstrap  Action = "hosts.bootstrap"
	DomainsList     Action = "domains.list"
	DomainsManage   Action = "domains.manage" // add, verify, remove
	CertsList       Action = "certs.list"
	CertsManage     Action = "certs.manage" // add, remove, renew
	AppExec         Action = "app.exec"
	GitPush         Action = "git.push"
	GitFetch        Action = "git.fetch"
	// App lifecycle: config vars, scaling, releases, rollback, events.
	ConfigRead   Action = "config.read"
	ConfigWrite  Action = "config.write" // set, unset
	AppScale     Action = "app.scale"
	AppEvents    Action = "app.events"
	ReleasesList Action = "releases.list"
	Rollback     Action = "releases.rollback"
)

// Target is what an action applies to. Empty fields mean "not scoped":
// an empty Namespace on a namespace-scoped action means every namespace.
type Target struct {
	Namespace string
	App       string
	Host      string
}

// ErrDenied is the only refusal Authorize gives.
var ErrDenied = errors.New("not allowed")

// Authorize reports whether p may do a on t.
func Authorize(p Principal, a Action, t Target) error {
	if a == Help && p.Role != RoleBootstrap || p.Role == RoleAdmin {
		return nil
	}
	switch p.Role {
	case RoleNamespace:
		switch a {
		case NamespaceList, RuntimesList:
			return nil
		case NamespaceInfo, AppCreate, AppList, AppInfo, AppSet, AppDelete, AppRun, AppStop, AppRestart, AppPS, AppLogs,
			DomainsList, DomainsManage, CertsList, CertsManage, AppExec,
			KeysAdd, KeysList, KeysRemove, GitPush, GitFetch,
			ConfigRead, ConfigWrite, AppScale, AppEvents, ReleasesList, Rollback:
			if p.Namespace != "" && t.Namespace == p.Namespace {
				return nil
			}
		}
	case RoleBootstrap:
		if a == HostsBootstrap && p.App != "" && t.Host == p.App {
			return nil
		}
	case RoleDeploy:
		switch a {
		case AppInfo, GitPush, GitFetch:
			if p.Namespace != "" && p.App != "" && t.Namespace == p.Namespace && t.App == p.App {
				return nil
			}
		}
	}
	return ErrDenied
}
