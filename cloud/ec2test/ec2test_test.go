package ec2test_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	"github.com/upscalehq/upscale/cloud/ec2test"
)

func client(t *testing.T, srv *ec2test.Server) *ec2.Client {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	cfg, err := config.LoadDefaultConfig(context.Background(), config.WithRegion("us-east-1"),
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("AKID", "secret", "")))
	if err != nil {
		t.Fatal(err)
	}
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(srv.URL) })
}

// The SDK itself must read what the stand-in writes: every field the
// cloud package and the server rely on goes through a real client here.
func TestStandInSpeaksTheSDKsXML(t *testing.T) {
	srv := ec2test.New(ec2test.Config{Pending: 10 * time.Millisecond})
	defer srv.Close()
	c := client(t, srv)
	ctx := context.Background()

	run := &ec2.RunInstancesInput{
		ImageId: aws.String("ami-1"), MinCount: aws.Int32(2), MaxCount: aws.Int32(2),
		InstanceType: types.InstanceTypeT3Small, ClientToken: aws.String("token-1"),
		TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{{Key: aws.String("upscale:host"), Value: aws.String("h1")}}}},
	}
	out, err := c.RunInstances(ctx, run)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Instances) != 2 || out.Instances[0].State.Name != types.InstanceStateNamePending || aws.ToString(out.Instances[0].PrivateIpAddress) == "" ||
		out.Instances[0].InstanceType != types.InstanceTypeT3Small || out.Instances[0].LaunchTime == nil {
		t.Fatalf("RunInstances answered %+v", out.Instances)
	}
	// Same client token: the same instances, not two more.
	again, err := c.RunInstances(ctx, run)
	if err != nil || len(again.Instances) != 2 || *again.Instances[0].InstanceId != *out.Instances[0].InstanceId || len(srv.Instances()) != 2 {
		t.Errorf("a retried RunInstances launched again: %v", err)
	}
	id := *out.Instances[0].InstanceId
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: []types.Tag{{Key: aws.String("role"), Value: aws.String("web")}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	d, err := c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{
		{Name: aws.String("tag:role"), Values: []string{"web"}},
		{Name: aws.String("instance-state-name"), Values: []string{"running"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Reservations) != 1 || len(d.Reservations[0].Instances) != 1 {
		t.Fatalf("filtered describe: %+v", d.Reservations)
	}
	inst := d.Reservations[0].Instances[0]
	if *inst.InstanceId != id || inst.State.Name != types.InstanceStateNameRunning || len(inst.Tags) != 2 {
		t.Errorf("described %+v", inst)
	}

	term, err := c.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	if ch := term.TerminatingInstances[0]; ch.CurrentState.Name != types.InstanceStateNameShuttingDown || ch.PreviousState.Name != types.InstanceStateNameRunning {
		t.Errorf("terminate: %+v -> %+v", ch.PreviousState, ch.CurrentState)
	}

	_, err = c.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0000000000000dead"}})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "InvalidInstanceID.NotFound" || api.ErrorMessage() != "The instance ID 'i-0000000000000dead' does not exist" {
		t.Errorf("unknown id: %v", err)
	}
}

func TestStandInWantsSignedRequests(t *testing.T) {
	srv := ec2test.New(ec2test.Config{})
	defer srv.Close()
	resp, err := http.PostForm(srv.URL, url.Values{"Action": {"DescribeInstances"}, "Version": {"2016-11-15"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := new(bytes.Buffer)
	_, _ = buf.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(buf.String(), "<Code>AuthFailure</Code>") {
		t.Errorf("unsigned request: %d %s", resp.StatusCode, buf)
	}
}
