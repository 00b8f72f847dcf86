package keys

import (
	"errors"
	"testing"
)

func TestAuthorizeMatrix(t *testing.T) {
	admin := Principal{Name: "op", Role: RoleAdmin}
	member := Principal{Name: "alice", Role: RoleNamespace, Namespace: "acme"}
	deploy := Principal{Name: "ci", Role: RoleDeploy, Namespace: "acme", App: "web"}
	boot := Principal{Name: "bootstrap-h1", Role: RoleBootstrap, App: "h1"}
	// A malformed principal (no namespace) must get nothing scoped.
	broken := Principal{Name: "x", Role: RoleNamespace}

	own := Target{Namespace: "acme", App: "web"}
	sibling := Target{Namespace: "acme", App: "api"}
	other := Target{Namespace: "globex", App: "web"}
	ownNS := Target{Namespace: "acme"}
	otherNS := Target{Namespace: "globex"}
	all := Target{}

	for _, tc := range []struct {
		p      Principal
		a      Action
		t      Target
		allows bool
	}{
		{admin, NamespaceCreate, otherNS, true},
		{admin, KeysAddAdmin, all, true},
		{admin, HostsList, all, true},
		{admin, GitPush, other, true},

		{member, Help, all, true},
		{member, NamespaceCreate, ownNS, false},
		{member, NamespaceDelete, ownNS, false},
		{member, NamespaceList, all, true},
		{member, NamespaceInfo, ownNS, true},
		{member, NamespaceInfo, otherNS, false},
		{member, NamespaceInfo, all, false},
		{member, NamespaceQuota, ownNS, false},
		{deploy, NamespaceInfo, ownNS, false},
		{member, AppCreate, ownNS, true},
		{member, AppCreate, otherNS, false},
		{member, AppList, ownNS, true},
		{member, AppList, all, false},
		{member, AppInfo, sibling, true},
		{member, AppInfo, other, false},
		{member, AppSet, own, true},
		{member, AppDelete, own, true},
		{member, AppDelete, other, false},
		{member, AppRun, own, true},
		{member, AppLogs, other, false},
		{member, KeysAdd, ownNS, true},
		{member, KeysAdd, otherNS, false},
		{member, KeysAddAdmin, all, false},
		{member, KeysList, ownNS, true},
		{member, KeysList, all, false},
		{member, KeysRemove, ownNS, true},
		{member, KeysRemove, all, false},
		{member, RuntimesList, all, true},
		{member, HostsList, all, false},
		{member, GitPush, sibling, true},
		{member, GitFetch, other, false},
		{member, DomainsList, own, true},
		{member, DomainsManage, sibling, true},
		{member, DomainsManage, other, false},
		{member, CertsList, own, true},
		{member, CertsManage, sibling, true},
		{member, CertsManage, other, false},
		{deploy, CertsList, own, false},
		{deploy, CertsManage, own, false},
		{member, AppExec, own, true},
		{member, AppExec, other, false},
		{deploy, DomainsList, own, false},
		{deploy, DomainsManage, own, false},
		{deploy, AppExec, own, false},

		{deploy, Help, all, true},
		{deploy, GitPush, own, true},
		{deploy, GitFetch, own, true},
		{deploy, AppInfo, own, true},
		{deploy, GitPush, sibling, false},
		{deploy, GitFetch, other, false},
		{deploy, AppInfo, sibling, false},
		{deploy, AppList, ownNS, false},
		{deploy, AppDelete, own, false},
		{deploy, AppSet, own, false},
		{deploy, AppRun, own, false},
		{deploy, AppStop, own, false},
		{deploy, AppRestart, own, false},
		{deploy, AppPS, own, false},
		{deploy, AppLogs, own, false},
		{deploy, KeysAdd, ownNS, false},
		{deploy, KeysList, ownNS, false},
		{deploy, NamespaceList, all, false},
		{deploy, RuntimesList, all, false},

		{admin, HostsManage, all, true},
		{member, HostsManage, all, false},
		{member, HostsBootstrap, Target{Host: "h1"}, false},
		{deploy, HostsManage, all, false},
		{boot, HostsBootstrap, Target{Host: "h1"}, true},
		{boot, HostsBootstrap, Target{Host: "h2"}, false},
		{boot, Help, all, false},
		{boot, AppInfo, own, false},
		{boot, HostsList, all, false},
		{Principal{Role: RoleBootstrap}, HostsBootstrap, Target{}, false},

		{broken, AppList, all, false},
		{broken, GitPush, Target{}, false},
		{Principal{Role: "bogus"}, AppInfo, own, false},
		{Principal{}, NamespaceList, all, false},
	} {
		err := Authorize(tc.p, tc.a, tc.t)
		if tc.allows && err != nil {
			t.Errorf("%s %s %+v: denied, want allowed", tc.p.Name, tc.a, tc.t)
		}
		if !tc.allows && !errors.Is(err, ErrDenied) {
			t.Errorf("%s %s %+v: got %v, want ErrDenied", tc.p.Name, tc.a, tc.t, err)
		}
	}
}
