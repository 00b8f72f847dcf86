package cloud_test

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/upscalehq/upscale/cloud"
	"github.com/upscalehq/upscale/cloud/ec2test"
)

// newEC2 points the real SDK client at a stand-in. The shared AWS files
// are pointed away so a developer's own profile cannot leak into a test.
func newEC2(t *testing.T, srv *ec2test.Server, mod func(*cloud.EC2Config)) *cloud.EC2 {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	cfg := cloud.EC2Config{
		Region:         "eu-west-3",
		AMI:            "ami-0debian12",
		Subnet:         "subnet-0abc",
		KeyName:        "ops",
		SecurityGroups: []string{"sg-0123", "default"},
		Endpoint:       srv.URL,
		Credentials:    credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		Poll:           20 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := cloud.NewEC2(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestEC2CreateTerminate(t *testing.T) {
	ran := make(chan string, 1)
	var gotUserData []byte
	srv := ec2test.New(ec2test.Config{
		Images: []string{"ami-0debian12"},
		OnRun: func(id string, userData []byte) {
			gotUserData = userData
			ran <- id
		},
	})
	defer srv.Close()
	e := newEC2(t, srv, nil)

	userData := "#!/bin/sh\necho 'hello from user-data'\n"
	id, ip, err := e.Create(context.Background(), "h7", userData)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^i-[0-9a-f]{17}$`).MatchString(id) {
		t.Errorf("id = %q", id)
	}
	inst, ok := srv.Instance(id)
	if !ok {
		t.Fatalf("%s not in the stand-in", id)
	}
	if ip == "" || ip != inst.PrivateIP {
		t.Errorf("private IP = %q, the stand-in says %q", ip, inst.PrivateIP)
	}
	if inst.State != "running" {
		t.Errorf("state after Create = %s", inst.State)
	}
	want := map[string]string{"Name": "upscale-h7", "upscale:host": "h7"}
	for k, v := range want {
		if inst.Tags[k] != v {
			t.Errorf("tag %s = %q, want %q (tags %v)", k, inst.Tags[k], v, inst.Tags)
		}
	}
	if inst.Type != cloud.DefaultInstanceType || inst.ImageID != "ami-0debian12" || inst.SubnetID != "subnet-0abc" || inst.KeyName != "ops" {
		t.Errorf("launched %+v", inst)
	}
	if len(inst.SecurityGroupIDs) != 1 || inst.SecurityGroupIDs[0] != "sg-0123" || len(inst.SecurityGroups) != 1 || inst.SecurityGroups[0] != "default" {
		t.Errorf("security groups: ids %v names %v", inst.SecurityGroupIDs, inst.SecurityGroups)
	}
	if inst.MetadataTokens != "required" {
		t.Errorf("IMDS tokens = %q, want required (the user data holds the bootstrap key)", inst.MetadataTokens)
	}
	select {
	case got := <-ran:
		if got != id {
			t.Errorf("OnRun(%s), want %s", got, id)
		}
		if string(gotUserData) != userData {
			t.Errorf("OnRun user data = %q, want %q", gotUserData, userData)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnRun was not called")
	}

	if err := e.Terminate(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if inst, _ := srv.Instance(id); inst.State != "shutting-down" {
		t.Errorf("state after Terminate = %s", inst.State)
	}
	waitState(t, srv, id, "terminated")
	// Destroying a host twice, or one EC2 forgot, is not an error.
	if err := e.Terminate(context.Background(), id); err != nil {
		t.Errorf("second Terminate: %v", err)
	}
	if err := e.Terminate(context.Background(), "i-00000000000000000"); err != nil {
		t.Errorf("Terminate of an unknown id: %v", err)
	}
}

func waitState(t *testing.T, srv *ec2test.Server, id, state string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		inst, _ := srv.Instance(id)
		if inst.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is %s, want %s", id, inst.State, state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEC2Errors(t *testing.T) {
	srv := ec2test.New(ec2test.Config{Images: []string{"ami-0debian12"}, Limit: 20, Pending: 5 * time.Millisecond})
	defer srv.Close()

	bad := newEC2(t, srv, func(c *cloud.EC2Config) { c.AMI = "ami-0bad" })
	_, _, err := bad.Create(context.Background(), "h1", "#!/bin/sh\n")
	want := "EC2 RunInstances: InvalidAMIID.NotFound: The image id '[ami-0bad]' does not exist"
	if err == nil || err.Error() != want {
		t.Errorf("bad AMI: %v\nwant %s", err, want)
	}
	var ee *cloud.Error
	if !errors.As(err, &ee) || ee.Code != "InvalidAMIID.NotFound" {
		t.Errorf("bad AMI error %#v is not a *cloud.Error with the code", err)
	}

	e := newEC2(t, srv, nil)
	for i := range 20 {
		if _, _, err := e.Create(context.Background(), "h1", "#!/bin/sh\n"); err != nil {
			t.Fatalf("instance %d: %v", i+1, err)
		}
	}
	_, _, err = e.Create(context.Background(), "h1", "#!/bin/sh\n")
	want = "EC2 RunInstances: InstanceLimitExceeded: You have requested more instances (21) than your current instance limit of 20 allows"
	if err == nil || err.Error() != want {
		t.Errorf("quota: %v\nwant %s", err, want)
	}
	if n := len(srv.Instances()); n != 20 {
		t.Errorf("%d instances after the refused one, want 20", n)
	}

	_, _, err = e.Create(context.Background(), "h1", string(make([]byte, cloud.MaxUserData+1)))
	want = "EC2 RunInstances: the user data is 16385 bytes; EC2 takes at most 16384"
	if err == nil || err.Error() != want {
		t.Errorf("big user data: %v\nwant %s", err, want)
	}

	srv.FailNext("TerminateInstances", "UnauthorizedOperation", "You are not authorized to perform this operation.")
	err = e.Terminate(context.Background(), srv.Instances()[0].ID)
	want = "EC2 TerminateInstances: UnauthorizedOperation: You are not authorized to perform this operation."
	if err == nil || err.Error() != want {
		t.Errorf("terminate refused: %v\nwant %s", err, want)
	}
}

func TestEC2CreateDeadlineWhilePending(t *testing.T) {
	srv := ec2test.New(ec2test.Config{Pending: time.Hour})
	defer srv.Close()
	e := newEC2(t, srv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	id, _, err := e.Create(ctx, "h2", "#!/bin/sh\n")
	if id == "" {
		t.Fatalf("no id returned with %v", err)
	}
	want := "EC2 waiting for " + id + " to run: context deadline exceeded (the instance was terminated)"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%v does not wrap context.DeadlineExceeded", err)
	}
	if inst, _ := srv.Instance(id); inst.State != "shutting-down" && inst.State != "terminated" {
		t.Errorf("an instance that never ran was left %s", inst.State)
	}
}

func TestEC2InstanceDiesWhilePending(t *testing.T) {
	srv := ec2test.New(ec2test.Config{Pending: time.Hour})
	defer srv.Close()
	e := newEC2(t, srv, nil)
	done := make(chan error, 1)
	go func() {
		_, _, err := e.Create(context.Background(), "h3", "#!/bin/sh\n")
		done <- err
	}()
	var id string
	for id == "" {
		if all := srv.Instances(); len(all) == 1 {
			id = all[0].ID
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Someone else (a console user, a spot reclaim) ends it first.
	e2 := newEC2(t, srv, nil)
	if err := e2.Terminate(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		want := "EC2 instance " + id + " is shutting-down instead of running: Client.UserInitiatedShutdown: User initiated shutdown (the instance was terminated)"
		want2 := "EC2 instance " + id + " is terminated instead of running: Client.UserInitiatedShutdown: User initiated shutdown (the instance was terminated)"
		if err == nil || (err.Error() != want && err.Error() != want2) {
			t.Errorf("err = %v\nwant %s", err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Create still waits for an instance that is gone")
	}
}

func TestNewEC2NeedsRegionCreateNeedsAMI(t *testing.T) {
	srv := ec2test.New(ec2test.Config{})
	defer srv.Close()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	// Terminating needs no AMI (hosts destroy has none); creating does.
	e, err := cloud.NewEC2(context.Background(), cloud.EC2Config{Region: "us-east-1", Endpoint: srv.URL})
	if err != nil {
		t.Fatalf("no AMI: %v", err)
	}
	if _, _, err := e.Create(context.Background(), "h1", "#!/bin/sh\n"); err == nil || err.Error() != "EC2: an AMI is required (a Debian 12 image id)" {
		t.Errorf("Create without an AMI: %v", err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("Create without an AMI called EC2 %d times", n)
	}
	if _, err := cloud.NewEC2(context.Background(), cloud.EC2Config{AMI: "ami-1"}); err == nil || err.Error() != "EC2: no region: give one or set AWS_REGION" {
		t.Errorf("no region: %v", err)
	}
}
