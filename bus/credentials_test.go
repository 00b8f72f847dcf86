package bus

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

// Fixed seeds, so the seed corpus and these tests do not change run to run.
const (
	testUserSeed    = "SUAEUMO6HBWIMRJOBCAGNB4J6JBXJQEI56MY3P7H6BLNKHUOS6JRZC6RIY"
	testAccountSeed = "SAACR66LYFBD74BY3SK7YKGJBXEYMFU3SZ2TQA3VHYMOXLYATS7LTFPG64"
	// testCA is a self-signed ECDSA CA certificate, valid 2025-2045.
	testCA = `-----BEGIN CERTIFICATE-----
MIIBZjCCAQugAwIBAgIBATAKBggqhkjOPQQDAjAaMRgwFgYDVQQDEw91cHNjYWxl
IHRlc3QgQ0EwHhcNMjUwMTAxMDAwMDAwWhcNNDUwMTAxMDAwMDAwWjAaMRgwFgYD
VQQDEw91cHNjYWxlIHRlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARV
NNvrZaaSaljAJTz+ccHFAjO/7rvByWdkZ7DSGL15gXsDyR188ty9ODytdvEuieS7
kunL7ssCoaUY9D0EDShzo0IwQDAOBgNVHQ8BAf8EBAMCAgQwDwYDVR0TAQH/BAUw
AwEB/zAdBgNVHQ4EFgQUO+l7wv2Wy5pqlLcqqZx3RV/zYTAwCgYIKoZIzj0EAwID
SQAwRgIhANJtpCNVP2JSBkhaU5O49QuXXviyeTfvtWpEs47AQSHwAiEA7lHGbnkI
/xJgpVy2fBwyTBXT9QSlFZKw0JHid3adBZ0=
-----END CERTIFICATE-----
`
)

// jsonString encodes s as a JSON string, for building credentials text.
func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestTestSeedsAreWhatTheySay(t *testing.T) {
	if _, err := userKey(testUserSeed); err != nil {
		t.Fatalf("user seed: %v", err)
	}
	if p, _, err := nkeys.DecodeSeed([]byte(testAccountSeed)); err != nil || p != nkeys.PrefixByteAccount {
		t.Fatalf("account seed: %v %v", p, err)
	}
	if c, err := parseCertPEM(testCA); err != nil || !c.IsCA {
		t.Fatalf("test CA: %v", err)
	}
}

func TestParseCredentials(t *testing.T) {
	valid := []string{
		`{"url":"nats://127.0.0.1:4222","agent":"h1","nkey":"` + testUserSeed + `"}`,
		`{"url":"tls://bus.example.com:4222,tls://bus2.example.com:4222","user":"upscale","password":"s3cret"}`,
		`{"url":"nats://bus:4222"}`,
		"  {\"url\":\"nats://bus\"}\n\n",
		`{"url":"tls://10.0.0.5:4222","agent":"h1","nkey":"` + testUserSeed + `","ca":` + jsonString(testCA) + `}`,
		`{"url":"nats://bus:4222","ca":` + jsonString(strings.TrimSpace(testCA)) + `}`,
	}
	for _, s := range valid {
		if _, err := parseCredentials([]byte(s)); err != nil {
			t.Errorf("parseCredentials(%s): %v", s, err)
		}
	}
	invalid := map[string]string{
		"empty":             ``,
		"not an object":     `[]`,
		"no url":            `{"nkey":"` + testUserSeed + `"}`,
		"unknown field":     `{"url":"nats://bus","token":"x"}`,
		"trailing data":     `{"url":"nats://bus"} {}`,
		"trailing garbage":  `{"url":"nats://bus"}x`,
		"http url":          `{"url":"http://bus:4222"}`,
		"url with userinfo": `{"url":"nats://u:p@bus:4222"}`,
		"url with path":     `{"url":"nats://bus:4222/x"}`,
		"no host":           `{"url":"nats://:4222"}`,
		"bad agent":         `{"url":"nats://bus","agent":"H1"}`,
		"agent wildcard":    `{"url":"nats://bus","agent":"h1.>"}`,
		"bad seed":          `{"url":"nats://bus","nkey":"SUAxxx"}`,
		"account seed":      `{"url":"nats://bus","nkey":"` + testAccountSeed + `"}`,
		"public key":        `{"url":"nats://bus","nkey":"UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"}`,
		"nkey and user":     `{"url":"nats://bus","nkey":"` + testUserSeed + `","user":"a","password":"b"}`,
		"user only":         `{"url":"nats://bus","user":"a"}`,
		"password only":     `{"url":"nats://bus","password":"b"}`,
		"control in pass":   `{"url":"nats://bus","user":"a","password":"b\n"}`,
		"number url":        `{"url":1}`,
		"null url":          `{"url":null}`,
		"key case":          `{"URL":"nats://bus"}`,
		"duplicate key":     `{"url":"nats://evil","url":"nats://bus"}`,
		"bad utf8":          "{\"url\":\"nats://bus\",\"user\":\"\xff\",\"password\":\"p\"}",
		"unterminated":      `{"url":"nats://bus"`,
		"nested":            `{"url":{"a":1}}`,
		"too big":           `{"url":"nats://bus","user":"a","password":"` + strings.Repeat("p", maxCredentialsFile) + `"}`,
		"ca not pem":        `{"url":"nats://bus","ca":"MIIBZjCCAQugAwIBAgIBATAK"}`,
		"ca empty pem":      `{"url":"nats://bus","ca":"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"}`,
		"ca garbage first":  `{"url":"nats://bus","ca":` + jsonString("junk\n"+testCA) + `}`,
		"ca data after":     `{"url":"nats://bus","ca":` + jsonString(testCA+"junk") + `}`,
		"ca twice":          `{"url":"nats://bus","ca":` + jsonString(testCA+testCA) + `}`,
		"ca key block":      `{"url":"nats://bus","ca":` + jsonString(strings.ReplaceAll(testCA, "CERTIFICATE", "PRIVATE KEY")) + `}`,
		"ca with headers":   `{"url":"nats://bus","ca":` + jsonString(strings.Replace(testCA, "-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1)) + `}`,
		"ca bad der":        `{"url":"nats://bus","ca":` + jsonString(strings.Replace(testCA, "MIIB", "MIIC", 1)) + `}`,
		"ca number":         `{"url":"nats://bus","ca":1}`,
	}
	for name, s := range invalid {
		if c, err := parseCredentials([]byte(s)); err == nil {
			t.Errorf("%s: accepted as %v", name, c)
		}
	}
}

func TestCredentialsWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bus.json")
	want := Credentials{URL: "tls://10.0.0.1:4222", Agent: "h1", NKey: testUserSeed, CA: testCA}
	if err := want.Write(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %04o, want 0600", fi.Mode().Perm())
	}
	got, err := ReadCredentials(path)
	if err != nil || got != want {
		t.Fatalf("ReadCredentials = %v, %v", got, err)
	}

	// Overwrite keeps 0600 and replaces the content.
	want2 := Credentials{URL: "nats://10.0.0.2:4222", User: "u", Password: "p"}
	if err := want2.Write(path); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadCredentials(path); err != nil || got != want2 {
		t.Fatalf("after overwrite = %v, %v", got, err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCredentials(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable file: %v", err)
	}
	if _, err := ReadCredentials(dir); err == nil {
		t.Fatal("directory accepted")
	}
	if err := (Credentials{}).Write(filepath.Join(dir, "bad.json")); err == nil {
		t.Fatal("invalid credentials written")
	}
}

func TestCredentialsNeverPrintSecrets(t *testing.T) {
	c := Credentials{URL: "nats://bus", Agent: "h1", NKey: testUserSeed, CA: testCA}
	u := Credentials{URL: "nats://bus", User: "upscale", Password: "hunter2"}
	for _, s := range []string{
		fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), c.LogValue().String(),
		fmt.Sprintf("%v %+v %#v", u, u, u),
	} {
		if strings.Contains(s, testUserSeed) || strings.Contains(s, "hunter2") {
			t.Fatalf("secret in %q", s)
		}
	}
}

func TestCredentialsFromURL(t *testing.T) {
	c, err := CredentialsFromURL("nats://upscale:s3cret@bus.example.com:4222")
	if err != nil {
		t.Fatal(err)
	}
	want := Credentials{URL: "nats://bus.example.com:4222", User: "upscale", Password: "s3cret"}
	if c != want {
		t.Fatalf("got %v / %q, want %v", c, c.Password, want)
	}
	for _, bad := range []string{"http://bus", "nats://user@bus", "::", "nats://bus/path"} {
		if _, err := CredentialsFromURL(bad); err == nil {
			t.Errorf("CredentialsFromURL(%q) accepted", bad)
		}
	}
}

// FuzzReadCredentials feeds file contents to the parser behind
// ReadCredentials. Whatever it accepts must survive a write/read cycle
// unchanged, so an agent's file can be rewritten without drift.
func FuzzReadCredentials(f *testing.F) {
	f.Add([]byte(`{"url":"nats://127.0.0.1:4222","agent":"h1","nkey":"` + testUserSeed + `"}`))
	f.Add([]byte(`{"url":"nats://bus:4222","user":"u","password":"p"}`))
	f.Add([]byte(`{"url":"tls://10.0.0.5:4222","agent":"h1","nkey":"` + testUserSeed + `","ca":` + jsonString(testCA) + `}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseCredentials(data)
		if err != nil {
			return
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := parseCredentials(out)
		if err != nil {
			t.Fatalf("accepted %q but not its own encoding %q: %v", data, out, err)
		}
		if c2 != c {
			t.Fatalf("round trip changed %v into %v", c, c2)
		}
		if s := c.String(); (c.NKey != "" && strings.Contains(s, c.NKey)) || (c.Password != "" && strings.Contains(s, c.Password) && !strings.Contains(c.URL+c.User+c.Agent, c.Password)) {
			t.Fatalf("String leaks a secret: %q", s)
		}
	})
}

// FuzzDecodeFrame covers what a caller reads from a handler: for the
// server, answers from agent hosts it does not fully trust.
func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte(`{"seq":0,"kind":"ack","cancel":"upscale.agent.h1.build._cancel.X"}`))
	f.Add([]byte(`{"seq":1,"kind":"progress","line":"-----> Building"}`))
	f.Add([]byte(`{"seq":2,"kind":"result","result":{"ok":true}}`))
	f.Add([]byte(`{"seq":3,"kind":"error","error":"boom"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := decodeFrame(data)
		if err != nil {
			return
		}
		switch fr.Kind {
		case kindAck, kindProgress, kindKeepalive, kindError:
		case kindResult:
			if len(fr.Result) == 0 || !json.Valid(fr.Result) {
				t.Fatalf("result frame with bad result %q", fr.Result)
			}
		default:
			t.Fatalf("accepted kind %q", fr.Kind)
		}
	})
}
