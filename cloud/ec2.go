package cloud

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/upscalehq/upscale/msgtext"
)

// EC2Config says where and how hosts are launched.
type EC2Config struct {
	Region         string
	InstanceType   string   // default DefaultInstanceType
	AMI            string   // a Debian 12 AMI; required by Create
	Subnet         string   // optional subnet id
	KeyName        string   // optional key pair
	SecurityGroups []string // ids (sg-...) or, in a default VPC, names
	Endpoint       string   // "" = AWS; tests point it at a local stand-in
	// Credentials: nil = the standard AWS chain (environment, shared
	// files, SSO, instance role).
	Credentials aws.CredentialsProvider
	// Poll is how often Create asks whether the instance runs, default
	// DefaultEC2Poll.
	Poll time.Duration
}

// Defaults for EC2Config.
const (
	DefaultInstanceType = "t3.small"
	DefaultEC2Poll      = 3 * time.Second
)

// MaxUserData is EC2's limit on user-data, before base64.
const MaxUserData = 16 << 10

// EC2 launches and terminates hosts.
type EC2 struct {
	api *ec2.Client
	cfg EC2Config
}

// NewEC2 builds a client from the standard AWS configuration with cfg's
// overrides. It does not call AWS. Only Create needs cfg.AMI: terminating
// an instance (hosts destroy) does not.
func NewEC2(ctx context.Context, cfg EC2Config) (*EC2, error) {
	if cfg.InstanceType == "" {
		cfg.InstanceType = DefaultInstanceType
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultEC2Poll
	}
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("EC2: loading the AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("EC2: no region: give one or set AWS_REGION")
	}
	api := ec2.NewFromConfig(awsCfg, func(o *ec2.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return &EC2{api: api, cfg: cfg}, nil
}

// Error is an error EC2 answered with.
type Error struct {
	Op      string // RunInstances, ...
	Code    string // InstanceLimitExceeded, InvalidAMIID.NotFound, ...
	Message string
	err     error
}

func (e *Error) Error() string { return "EC2 " + e.Op + ": " + e.Code + ": " + e.Message }
func (e *Error) Unwrap() error { return e.err }

// ec2Error makes err one line: the SDK's own text carries the HTTP status,
// request id and retry count, which tell an operator less than the code.
func ec2Error(op string, err error) error {
	var api smithy.APIError
	if errors.As(err, &api) {
		return &Error{Op: op, Code: api.ErrorCode(), Message: msgtext.OneLine(api.ErrorMessage()), err: err}
	}
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		return fmt.Errorf("EC2 %s: %w", op, oe.Err)
	}
	return fmt.Errorf("EC2 %s: %w", op, err)
}

func apiCode(err error) string {
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode()
	}
	return ""
}

// Create runs one instance with userData (cloud-init runs it at first
// boot), tagged Name=upscale-HOST and upscale:host=HOST, waits until it is
// running and returns its id and private IP. When it does not get to
// running (ctx ends, the instance dies, EC2 fails), the instance is
// terminated and the error says so; id is still returned for the record.
func (e *EC2) Create(ctx context.Context, host, userData string) (id, privateIP string, err error) {
	if e.cfg.AMI == "" {
		return "", "", errors.New("EC2: an AMI is required (a Debian 12 image id)")
	}
	if len(userData) > MaxUserData {
		return "", "", fmt.Errorf("EC2 RunInstances: the user data is %d bytes; EC2 takes at most %d", len(userData), MaxUserData)
	}
	tags := []types.Tag{
		{Key: aws.String("Name"), Value: aws.String("upscale-" + host)},
		{Key: aws.String("upscale:host"), Value: aws.String(host)},
	}
	in := &ec2.RunInstancesInput{
		ImageId:      aws.String(e.cfg.AMI),
		InstanceType: types.InstanceType(e.cfg.InstanceType),
		MinCount:     aws.Int32(1),
		MaxCount:     aws.Int32(1),
		UserData:     aws.String(base64.StdEncoding.EncodeToString([]byte(userData))),
		// Tagged at launch, not after: an instance is never untagged, so
		// a crash between two calls cannot leave one nobody recognizes.
		TagSpecifications: []types.TagSpecification{
			{ResourceType: types.ResourceTypeInstance, Tags: tags},
			{ResourceType: types.ResourceTypeVolume, Tags: tags},
		},
		// The user data holds the bootstrap key: IMDSv2 with one hop keeps
		// it from the containers, whose requests go through the host's NAT.
		MetadataOptions: &types.InstanceMetadataOptionsRequest{
			HttpTokens:              types.HttpTokensStateRequired,
			HttpPutResponseHopLimit: aws.Int32(1),
		},
	}
	if e.cfg.Subnet != "" {
		in.SubnetId = aws.String(e.cfg.Subnet)
	}
	if e.cfg.KeyName != "" {
		in.KeyName = aws.String(e.cfg.KeyName)
	}
	for _, g := range e.cfg.SecurityGroups {
		if strings.HasPrefix(g, "sg-") {
			in.SecurityGroupIds = append(in.SecurityGroupIds, g)
		} else {
			in.SecurityGroups = append(in.SecurityGroups, g)
		}
	}
	out, err := e.api.RunInstances(ctx, in)
	if err != nil {
		return "", "", ec2Error("RunInstances", err)
	}
	if len(out.Instances) != 1 || out.Instances[0].InstanceId == nil {
		return "", "", fmt.Errorf("EC2 RunInstances: expected one instance, got %d", len(out.Instances))
	}
	id = *out.Instances[0].InstanceId
	privateIP, err = e.waitRunning(ctx, id)
	if err == nil {
		return id, privateIP, nil
	}
	// Nobody will register or destroy a host that never ran: terminate it
	// now, even when ctx is what ended.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if terr := e.terminateNew(tctx, id); terr != nil {
		return id, "", fmt.Errorf("%w (terminating it failed too: %v)", err, terr)
	}
	return id, "", fmt.Errorf("%w (the instance was terminated)", err)
}

func (e *EC2) waitRunning(ctx context.Context, id string) (string, error) {
	tick := time.NewTicker(e.cfg.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("EC2 waiting for %s to run: %w", id, ctx.Err())
		case <-tick.C:
		}
		out, err := e.api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
		if err != nil {
			if ctx.Err() != nil {
				return "", fmt.Errorf("EC2 waiting for %s to run: %w", id, ctx.Err())
			}
			// EC2 is eventually consistent: a new id may be unknown
			// for a moment.
			if apiCode(err) == "InvalidInstanceID.NotFound" {
				continue
			}
			return "", ec2Error("DescribeInstances", err)
		}
		inst, ok := findInstance(out, id)
		if !ok || inst.State == nil {
			continue
		}
		switch inst.State.Name {
		case types.InstanceStateNameRunning:
			return aws.ToString(inst.PrivateIpAddress), nil
		case types.InstanceStateNamePending:
			continue
		}
		reason := ""
		if inst.StateReason != nil && inst.StateReason.Message != nil {
			reason = ": " + msgtext.OneLine(*inst.StateReason.Message)
		}
		return "", fmt.Errorf("EC2 instance %s is %s instead of running%s", id, inst.State.Name, reason)
	}
}

func findInstance(out *ec2.DescribeInstancesOutput, id string) (types.Instance, bool) {
	for _, r := range out.Reservations {
		for _, i := range r.Instances {
			if aws.ToString(i.InstanceId) == id {
				return i, true
			}
		}
	}
	return types.Instance{}, false
}

// Terminate terminates instance id. An instance EC2 no longer knows counts
// as terminated, so that destroying a host twice is not an error.
func (e *EC2) Terminate(ctx context.Context, id string) error {
	_, err := e.api.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	if err != nil && apiCode(err) != "InvalidInstanceID.NotFound" {
		return ec2Error("TerminateInstances", err)
	}
	return nil
}

// terminateNew terminates an instance just launched, which EC2's eventual
// consistency may still call unknown for a moment.
func (e *EC2) terminateNew(ctx context.Context, id string) error {
	for {
		_, err := e.api.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
		if err == nil {
			return nil
		}
		if apiCode(err) != "InvalidInstanceID.NotFound" {
			return ec2Error("TerminateInstances", err)
		}
		select {
		case <-ctx.Done():
			return ec2Error("TerminateInstances", err)
		case <-time.After(e.cfg.Poll):
		}
	}
}
