// Command caller holds one Live conversation with livegate over gRPC: a text turn, GetSession while the session
// is live, and a function call answered by the caller. A sketch to copy from, not built by the repository: see
// docs/other-languages.md for generating the stubs it imports (protoc-gen-go + protoc-gen-go-grpc) and for
// the go.mod it needs.
//
//	go run . -target 127.0.0.1:50051
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	// The import path is proto/'s go_package; with buf's managed mode (go_package_prefix) it is
	// <your module>/gen/go/livegate/v1 instead.
	livegatev1 "github.com/livegate/livegate/gen/go/livegate/v1"
)

func main() {
	target := flag.String("target", "127.0.0.1:50051", "livegate front, host:port")
	flag.Parse()
	if err := run(*target); err != nil {
		fmt.Fprintln(os.Stderr, "caller failed:", describe(err))
		os.Exit(1)
	}
	fmt.Println("all done")
}

func run(target string) error {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := livegatev1.NewLiveGatewayClient(conn)

	// The deadline covers the whole stream: a real conversation needs a longer one, or none.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := client.Connect(ctx)
	if err != nil {
		return err
	}

	// 1. setup (first message) -> session (seq 0) -> setup_complete (seq 1)
	setup := &livegatev1.BidiGenerateContentSetup{
		Model: "gemini-live-2.5-flash",
		GenerationConfig: &livegatev1.GenerationConfig{
			ResponseModalities: []livegatev1.GenerationConfig_Modality{livegatev1.GenerationConfig_TEXT},
		},
		Tools: []*livegatev1.Tool{{
			FunctionDeclarations: []*livegatev1.FunctionDeclaration{{Name: "turn_on_the_lights"}},
		}},
	}
	if err := stream.Send(&livegatev1.ClientMessage{Message: &livegatev1.ClientMessage_Setup{Setup: setup}}); err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	session := first.GetSession() // also keep session.GetReattachToken() and the last seq, to reattach
	if session == nil {
		return fmt.Errorf("expected a session message, got %T", first.GetMessage())
	}
	if second, err := stream.Recv(); err != nil {
		return err
	} else if second.GetSetupComplete() == nil {
		return fmt.Errorf("expected setup_complete, got %T", second.GetMessage())
	}
	fmt.Println("session", session.GetSessionId())

	// 2. a text turn
	if err := stream.Send(userText("Hello")); err != nil {
		return err
	}
	reply, err := readTurn(stream)
	if err != nil {
		return err
	}
	fmt.Println("<", reply) // You said: "Hello"

	// 3. GetSession while the session is live
	info, err := client.GetSession(ctx, &livegatev1.GetSessionRequest{SessionId: session.GetSessionId()})
	if err != nil {
		return err
	}
	fmt.Printf("state=%s server_messages=%d\n", info.GetState(), info.GetCounters().GetServerMessages())

	// 4. a function call: readTurn answers the tool_call, then returns the model's final text
	if err := stream.Send(userText("Turn on the lights please")); err != nil {
		return err
	}
	if reply, err = readTurn(stream); err != nil {
		return err
	}
	fmt.Println("<", reply) // turn_on_the_lights returned {"result":"ok"}.

	// 5. half-close, then read until the gateway ends the stream (io.EOF means status OK)
	if err := stream.CloseSend(); err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
	}
}

func userText(text string) *livegatev1.ClientMessage {
	return &livegatev1.ClientMessage{Message: &livegatev1.ClientMessage_ClientContent{
		ClientContent: &livegatev1.BidiGenerateContentClientContent{
			Turns: []*livegatev1.Content{{
				Role:  "user",
				Parts: []*livegatev1.Part{{Data: &livegatev1.Part_Text{Text: text}}},
			}},
			TurnComplete: proto.Bool(true), // `optional bool`: a pointer in Go
		},
	}}
}

// readTurn reads one model turn until server_content.turn_complete, answering tool calls on the way.
func readTurn(stream livegatev1.LiveGateway_ConnectClient) (string, error) {
	var text strings.Builder
	for {
		msg, err := stream.Recv()
		if err != nil {
			return "", err // io.EOF here: the stream ended mid-turn
		}
		switch m := msg.GetMessage().(type) {
		case *livegatev1.ServerMessage_ToolCall:
			var responses []*livegatev1.FunctionResponse
			for _, call := range m.ToolCall.GetFunctionCalls() {
				result, err := structpb.NewStruct(map[string]any{"result": "ok"})
				if err != nil {
					return "", err
				}
				responses = append(responses, &livegatev1.FunctionResponse{
					Id: call.GetId(), Name: call.GetName(), Response: result,
				})
			}
			err := stream.Send(&livegatev1.ClientMessage{Message: &livegatev1.ClientMessage_ToolResponse{
				ToolResponse: &livegatev1.BidiGenerateContentToolResponse{FunctionResponses: responses},
			}})
			if err != nil {
				return "", err
			}
		case *livegatev1.ServerMessage_ServerContent:
			for _, part := range m.ServerContent.GetModelTurn().GetParts() {
				if !part.GetThought() {
					text.WriteString(part.GetText())
				}
			}
			if m.ServerContent.GetTurnComplete() {
				return text.String(), nil
			}
		}
	}
}

// describe renders a gRPC error with the gateway's google.rpc.ErrorInfo.
func describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "gRPC error %s: %s", st.Code(), st.Message())
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			fmt.Fprintf(&b, "\n  ErrorInfo reason=%s domain=%s metadata=%v", d.GetReason(), d.GetDomain(), d.GetMetadata())
		case *errdetails.RetryInfo:
			fmt.Fprintf(&b, "\n  RetryInfo retry_delay=%s", d.GetRetryDelay().AsDuration())
		}
	}
	return b.String()
}
